//! The names the report gives the servers a run measures, and which of them are peers: shared
//! by the modules that run, compare and report them.

pub const INTAKE: &str = "intake";
/// intake with `storage.kind = "s3"`, against the run's S3 server.
pub const INTAKE_S3: &str = "intake (S3)";
/// `bare-ceiling`: actix-web answering `/ping`, and a raw-body sink that hashes and fdatasyncs.
pub const BARE: &str = "bare actix-web (ceiling)";
/// The durable FastAPI peer (bench/peer/durable.py), the peer whose answer means what
/// intake's does.
pub const DURABLE_PEER: &str = "FastAPI, durable";
/// The run's S3 server taking the S3 cases' objects straight from object_store (`s3::put`).
pub const S3_ALONE: &str = "the S3 server alone (object_store PUTs)";

/// A server intake is compared with: not intake, not a ceiling.
pub fn is_peer(target: &str) -> bool {
    !target.starts_with(INTAKE) && target != BARE && target != S3_ALONE
}

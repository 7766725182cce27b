//! Resumable uploads, in two protocols over one core: tus 1.0 under `/tus/` (`tus`), and the
//! IETF's Resumable Uploads for HTTP draft under `/resumable/` (`ietf`).
//!
//! An upload's state lives in Postgres (`crate::resumable::record`), so that any instance
//! continues it, whichever protocol it came in by: a request takes the upload's lease
//! (`holding`), appends to storage and records the new offset with the SHA-256 state
//! (`receive`). The upload's id is the id of the file it becomes: `/tus/{id}` and
//! `/resumable/{id}` turn into `/files/{id}` when the upload is whole.

mod checksum;
mod commit;
mod creation;
mod fields;
mod finished;
mod holding;
pub mod ietf;
mod receive;
pub mod tus;

use std::sync::Arc;

use actix_web::web;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{base::configuration::TusSettings, ingest::Ingest, resumable::writers};

/// The area's own state; what it shares with multipart uploads is `ingest`.
pub struct Resumable {
    pub ingest: web::Data<Ingest>,
    /// `tus.*`: expiry, checkpoints and caps, for both protocols.
    pub settings: TusSettings,
    /// The resumable uploads being written here.
    pub writers: Arc<writers::Writers>,
}

pub fn routes(cfg: &mut ServiceConfig) {
    tus::routes(cfg);
    ietf::routes(cfg);
}

/// The routes that bring a file's bytes, for the request metrics: each protocol's creation,
/// and its `PATCH` (tus's also as `POST` with `X-HTTP-Method-Override`).
pub fn upload_routes() -> Vec<(&'static str, &'static str)> {
    let mut routes: Vec<_> = tus::CREATION
        .iter()
        .chain(&ietf::CREATION)
        .map(|path| ("POST", *path))
        .collect();
    routes.extend([
        ("PATCH", tus::UPLOAD),
        ("POST", tus::UPLOAD),
        ("PATCH", ietf::UPLOAD),
    ]);
    routes
}

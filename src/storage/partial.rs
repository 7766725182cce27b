//! How far a resumable upload's bytes are stored, as its row records it: shared by the
//! resumable side of storage and by both backends' appenders.

use bytes::Bytes;
use sha2::Sha256;

/// How far a resumable upload's bytes are stored: what its row records.
#[derive(Debug, Clone)]
pub struct Partial {
    pub size: u64,
    /// The SHA-256 state after `size` bytes.
    pub hasher: Sha256,
    /// On S3: the multipart upload the bytes go to.
    pub multipart: Option<Multipart>,
}

/// Where a resumable upload's multipart upload stands.
#[derive(Debug, Clone, Default)]
pub struct Multipart {
    pub upload_id: String,
    /// The ETags of the parts sent, in order.
    pub parts: Vec<String>,
    /// The bytes after the last part.
    pub tail: Bytes,
}

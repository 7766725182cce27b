//! How far a resumable upload's bytes are stored, as its row records it, and what the next
//! request says it brings: shared by the resumable side of storage and by both backends'
//! appenders.

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
    /// The size its parts are cut at, once chosen; `None`: the store's.
    pub part_size: Option<u64>,
}

/// What a request says of the bytes it brings, so that the storage can cut parts to fit them.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// The body's length (`Content-Length`), when it has one.
    pub body: Option<u64>,
    /// The most the whole upload can come to.
    pub upload: u64,
}

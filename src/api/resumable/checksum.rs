//! A checksum of one request's body, checked before its bytes count: tus's `Upload-Checksum`.

use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::base::error::ApiError;

/// `Upload-Checksum: <algorithm> <base64 digest>` of one PATCH's body.
pub enum Checksum {
    Sha1(Sha1, Vec<u8>),
    Sha256(Sha256, Vec<u8>),
}

impl Checksum {
    /// Hashes a batch on the blocking pool: a chunk may be many megabytes.
    pub async fn update(self, batch: Vec<Bytes>) -> Result<Self, ApiError> {
        tokio::task::spawn_blocking(move || match self {
            Self::Sha1(mut hasher, expected) => {
                batch.iter().for_each(|chunk| hasher.update(chunk));
                Self::Sha1(hasher, expected)
            }
            Self::Sha256(mut hasher, expected) => {
                batch.iter().for_each(|chunk| hasher.update(chunk));
                Self::Sha256(hasher, expected)
            }
        })
        .await
        .map_err(ApiError::internal)
    }

    pub fn matches(self) -> bool {
        match self {
            Self::Sha1(hasher, expected) => hasher.finalize().as_slice() == expected,
            Self::Sha256(hasher, expected) => hasher.finalize().as_slice() == expected,
        }
    }
}

//! One file's bytes as they arrive, whatever protocol brings them: counted, held to their
//! limit, typed by their first bytes, and gathered into batches for the storage.

use std::mem;

use bytes::Bytes;

use super::{
    BATCH_BYTES,
    content_type::{AllowList, Detector},
};
use crate::base::{error::ApiError, telemetry::metrics};

/// Where a file's bytes must stop.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// `upload.max_file_bytes`.
    MaxFile(u64),
    /// A resumable upload's declared length.
    Length(u64),
}

impl Limit {
    fn bytes(self) -> u64 {
        match self {
            Self::MaxFile(bytes) | Self::Length(bytes) => bytes,
        }
    }

    pub fn exceeded(self) -> ApiError {
        match self {
            Self::MaxFile(bytes) => ApiError::FileTooLarge(bytes),
            Self::Length(bytes) => ApiError::BeyondLength(bytes),
        }
    }
}

/// Chunks received and not yet stored, and their size.
#[derive(Debug, Default)]
pub struct Batch {
    pub chunks: Vec<Bytes>,
    pub bytes: u64,
}

pub struct Incoming<'a> {
    size: u64,
    limit: Limit,
    /// While the first bytes may still tell the type; checked against `allow` once they have.
    detector: Option<Detector>,
    checked: bool,
    allow: &'a AllowList,
    batch: Batch,
    counted: ::metrics::Counter,
}

impl<'a> Incoming<'a> {
    /// Bytes from `offset` on (a resumable upload's earlier requests brought the rest), typed by
    /// `detector` if they are the first.
    pub fn new(
        offset: u64,
        limit: Limit,
        detector: Option<Detector>,
        allow: &'a AllowList,
    ) -> Self {
        Self {
            size: offset,
            limit,
            checked: detector.as_ref().is_none_or(Detector::is_ready),
            detector,
            allow,
            batch: Batch::default(),
            counted: metrics::bytes_received(),
        }
    }

    /// Takes the next chunk: beyond the limit, or of a type not allowed, it is refused. A full
    /// batch is held until the next chunk comes, and then comes back, to be reserved against the
    /// quota and stored: the batch that ends a file is its last, which the storage writes and
    /// syncs in one trip to the blocking pool (a 1 MiB file makes four trips, not five).
    pub fn push(&mut self, chunk: Bytes) -> Result<Option<Batch>, ApiError> {
        let length = chunk.len() as u64;
        self.counted.increment(length);
        self.size += length;
        if self.size > self.limit.bytes() {
            return Err(self.limit.exceeded());
        }
        if let Some(detector) = &mut self.detector {
            detector.observe(&chunk);
            if !self.checked && detector.is_ready() {
                self.allow.check(&detector.content_type())?;
                self.checked = true;
            }
        }
        let full = (self.batch.bytes >= BATCH_BYTES as u64).then(|| mem::take(&mut self.batch));
        self.batch.bytes += length;
        self.batch.chunks.push(chunk);
        Ok(full)
    }

    /// Everything received, earlier requests' bytes included.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The type the first bytes tell, checked against the allow-list; `None` without a
    /// detector.
    pub fn content_type(&self) -> Result<Option<String>, ApiError> {
        let Some(detector) = &self.detector else {
            return Ok(None);
        };
        let content_type = detector.content_type();
        self.allow.check(&content_type)?;
        Ok(Some(content_type))
    }

    /// The last batch, however full.
    pub fn into_last(self) -> Batch {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: usize) -> Bytes {
        Bytes::from(vec![7; bytes])
    }

    #[test]
    fn a_full_batch_waits_for_the_next_chunk_so_that_the_last_one_ends_the_file() {
        let allow = AllowList::new(&[]);
        let mut incoming = Incoming::new(0, Limit::MaxFile(u64::MAX), None, &allow);
        let quarter = BATCH_BYTES / 4;
        for _ in 0..4 {
            assert!(incoming.push(chunk(quarter)).unwrap().is_none());
        }
        // Full, but nothing has followed it yet: it could still be the file's end.
        let full = incoming
            .push(chunk(10))
            .unwrap()
            .expect("the full batch comes back");
        assert_eq!((full.chunks.len(), full.bytes), (4, BATCH_BYTES as u64));
        for _ in 0..3 {
            assert!(incoming.push(chunk(quarter)).unwrap().is_none());
        }
        assert_eq!(
            incoming.size(),
            BATCH_BYTES as u64 + 10 + 3 * quarter as u64
        );
        let last = incoming.into_last();
        assert_eq!(
            (last.chunks.len(), last.bytes),
            (4, 10 + 3 * quarter as u64)
        );
    }

    #[test]
    fn a_chunk_past_the_limit_is_refused_even_while_a_full_batch_waits() {
        let allow = AllowList::new(&[]);
        let limit = BATCH_BYTES as u64 + 1;
        let mut incoming = Incoming::new(0, Limit::MaxFile(limit), None, &allow);
        assert!(incoming.push(chunk(BATCH_BYTES)).unwrap().is_none());
        let refused = incoming.push(chunk(2)).expect_err("past the limit");
        assert!(matches!(refused, ApiError::FileTooLarge(bytes) if bytes == limit));
    }
}

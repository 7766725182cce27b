//! The storage side of resumable uploads: bytes appended PATCH by PATCH, each PATCH ending in
//! a state that may be recorded (durable on disk; on S3 full parts sent and the tail handed
//! back), and, once whole, an object at its final place like any upload's.

use std::io;

use bytes::Bytes;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    Pending, Storage,
    partial::{Expected, Partial},
    s3,
};
use crate::base::{
    in_flight,
    telemetry::metrics::{batch_written, durable, observed},
};

/// Appends one PATCH's bytes. Dropped without `pause`, the bytes it took are not recorded;
/// `drain` waits for what it still writes.
pub enum Appender {
    Fs(super::fs::FsAppender),
    S3(s3::S3Appender),
}

impl Storage {
    /// Prepares the storage for a new resumable upload: on S3, starts its multipart upload.
    pub async fn start_resumable(&self, id: Uuid) -> io::Result<Option<String>> {
        match self {
            Self::Fs(_) => Ok(None),
            Self::S3(store) => store.start_resumable(id).await.map(Some),
        }
    }

    /// Continues resumable upload `id` from `partial` with a request that brings `expected`.
    pub async fn append(
        &self,
        id: Uuid,
        partial: Partial,
        expected: Expected,
    ) -> io::Result<Appender> {
        match (self, partial.multipart) {
            (Self::Fs(store), _) => Ok(Appender::Fs(
                store.append(id, partial.size, partial.hasher).await?,
            )),
            (Self::S3(store), Some(multipart)) => Ok(Appender::S3(store.append(
                id,
                partial.size,
                partial.hasher,
                multipart,
                expected,
            ))),
            (Self::S3(_), None) => Err(missing_multipart()),
        }
    }

    /// Puts the whole upload at its object's place. The returned guard removes it from there
    /// again unless its row is committed; the upload's own bytes stay until `forget_resumable`.
    pub async fn complete_resumable(
        &self,
        id: Uuid,
        partial: Partial,
        hold: in_flight::Shared,
    ) -> io::Result<Pending> {
        durable(self.backend(), async {
            match (self, partial.multipart) {
                (Self::Fs(store), _) => Ok(Pending::Fs(store.complete_partial(id, hold).await?)),
                // The object is the upload's until its row is committed: the upload's row,
                // which stays when the commit fails, guards it (see `discard_resumable`).
                (Self::S3(store), Some(multipart)) => {
                    store
                        .complete_resumable(id, partial.size, multipart)
                        .await?;
                    Ok(Pending::S3(s3::Intent::settled()))
                }
                (Self::S3(_), None) => Err(missing_multipart()),
            }
        })
        .await
    }

    /// Whether partial uploads can be concatenated here (tus concatenation): on disk, and in a
    /// bucket that copies parts (`storage.s3.copy_parts`), where the file's parts are copied
    /// from the partial uploads' objects inside the bucket.
    pub fn concatenates(&self) -> bool {
        match self {
            Self::Fs(_) => true,
            Self::S3(store) => store.copies(),
        }
    }

    /// Makes a whole partial upload readable and copyable for a final upload: in a bucket, its
    /// multipart upload completed into an object of its own (at the partial upload's key, which
    /// is no file's: its row guards it, and `begin_forget_partial` removes it). Done again, it
    /// finds the object made.
    pub async fn seal_partial(&self, id: Uuid, partial: Partial) -> io::Result<()> {
        match (self, partial.multipart) {
            (Self::Fs(_), _) => Ok(()),
            (Self::S3(store), Some(multipart)) => {
                store.complete_resumable(id, partial.size, multipart).await
            }
            (Self::S3(_), None) => Err(missing_multipart()),
        }
    }

    /// The bytes of a whole (sealed) partial upload of `length` bytes, for a final upload.
    pub async fn read_partial(&self, id: Uuid, length: u64) -> io::Result<super::ByteStream> {
        match self {
            Self::Fs(store) => store.read_partial(id, length).await,
            Self::S3(store) => store.read(id, 0, length).await,
        }
    }

    /// Records, in the transaction that makes a final upload's file, that a partial upload's
    /// sealed object is to go with its row: on S3 a delete intent, settled by the commit's
    /// outcome. `None` on disk, where `forget_resumable` removes its bytes.
    pub async fn begin_forget_partial(
        &self,
        id: Uuid,
        tx: &mut PgConnection,
    ) -> sqlx::Result<Option<Pending>> {
        match self {
            Self::Fs(_) => Ok(None),
            Self::S3(store) => Ok(Some(Pending::S3(store.begin_delete(id, tx).await?))),
        }
    }

    /// The upload became a file: its own bytes are not needed any more.
    pub async fn forget_resumable(&self, id: Uuid) -> io::Result<()> {
        match self {
            Self::Fs(store) => store.remove_partial(id).await,
            Self::S3(_) => Ok(()),
        }
    }

    /// The resumable uploads whose bytes this storage keeps on its own, for the sweep to
    /// compare with their rows: files on disk. (A bucket's multipart uploads without a row are
    /// ended by the bucket's lifecycle rule.)
    pub async fn resumable_leftovers(&self) -> io::Result<Vec<Uuid>> {
        match self {
            Self::Fs(store) => store.partials().await,
            Self::S3(_) => Ok(Vec::new()),
        }
    }

    /// Removes whatever a resumable upload that will never be a file left behind. Only while
    /// its row exists (and so no file row does).
    /// Records, in the transaction that deletes the upload's row, that its bytes are to go: on
    /// S3 an intent (its multipart upload aborted on `commit`, or by the sweep if that fails).
    /// `None` on disk, where the sweep removes upload files without a row.
    pub async fn begin_discard_resumable(
        &self,
        id: Uuid,
        multipart: Option<&str>,
        tx: &mut PgConnection,
    ) -> sqlx::Result<Option<Pending>> {
        match (self, multipart) {
            (Self::S3(store), Some(upload_id)) => {
                let intent = store.begin_discard(id, upload_id, tx).await?;
                Ok(Some(Pending::S3(intent)))
            }
            _ => Ok(None),
        }
    }

    pub async fn discard_resumable(&self, id: Uuid, multipart: Option<&str>) -> io::Result<()> {
        observed(self.backend(), "discard", async {
            match (self, multipart) {
                (Self::Fs(store), _) => store.remove_partial(id).await,
                (Self::S3(store), Some(upload_id)) => store.discard_resumable(id, upload_id).await,
                (Self::S3(_), None) => Ok(()),
            }
        })
        .await
    }
}

fn missing_multipart() -> io::Error {
    io::Error::other("a resumable upload on S3 has no multipart upload")
}

impl Appender {
    backend_label!();

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        batch_written(self.backend(), async {
            each_backend!(self, appender => appender.write(batch).await)
        })
        .await
    }

    /// Stores the last batch and returns the state to record.
    pub async fn pause(self, last: Vec<Bytes>) -> io::Result<Partial> {
        observed(self.backend(), "pause", async {
            each_backend!(self, appender => appender.pause(last).await)
        })
        .await
    }

    /// Makes what was stored so far recordable without ending the PATCH.
    pub async fn checkpoint(&mut self) -> io::Result<Partial> {
        observed(self.backend(), "checkpoint", async {
            each_backend!(self, appender => appender.checkpoint().await)
        })
        .await
    }

    /// Waits for writes still under way, so that nothing changes after the upload's lease is
    /// given up.
    pub async fn drain(self) {
        each_backend!(self, appender => appender.drain().await)
    }
}

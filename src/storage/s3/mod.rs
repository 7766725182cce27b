//! Objects in an S3-compatible bucket, with Postgres as the record of changes under way.
//!
//! ```text
//! {prefix}{ab}/{id}        committed objects (ab: the id's last two hex digits, so that keys
//!                          spread over 256 prefixes: S3 throttles per prefix)
//! storage_intents          one row per object change under way (see the migration)
//! ```
//!
//! An upload records its intent (with its multipart upload id) before its first part reaches
//! the bucket; the statement that inserts its row deletes the intent (`claim_intents`). A delete
//! records its intent in the transaction that deletes the row, then removes the object. Whatever
//! fails, an intent is left for the sweep: row present → the object stays; absent → it goes, and
//! its multipart upload is aborted.

mod buffer;
mod client;
mod copy;
mod intent;
mod part_size;
mod repair;
mod writer;

use std::{io, sync::Arc, time::Duration};

use futures_util::{StreamExt, TryStreamExt};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    aws::AmazonS3,
    multipart::{MultipartStore, PartId},
    path::Path,
};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub use self::{
    client::client,
    intent::Intent,
    writer::{S3Appender, S3Writer},
};
use super::{
    ByteStream,
    partial::{Expected, Multipart},
};
use crate::base::{configuration::S3Settings, in_flight, liveness::Liveness};

/// S3's smallest part but the last.
pub(super) const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// The largest part kept in memory.
const MAX_PART_SIZE: usize = 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid storage.s3 settings")]
    Settings(#[source] object_store::Error),
    #[error(
        "could not reach bucket `{bucket}` at {endpoint} (storage.s3: check endpoint, bucket, region and credentials)"
    )]
    Unreachable {
        bucket: String,
        endpoint: String,
        #[source]
        cause: object_store::Error,
    },
    #[error("could not make the client that copies parts (storage.s3.copy_parts)")]
    Copier(#[source] reqwest::Error),
}

/// Where object `id` lives under `prefix`: its id's last two hex digits first, so that keys
/// spread over 256 prefixes.
pub fn object_key(prefix: &str, id: Uuid) -> Path {
    let hex = id.simple().to_string();
    Path::from(format!("{prefix}{}/{id}", &hex[30..32]))
}

#[derive(Debug)]
pub struct S3Store {
    client: AmazonS3,
    /// Downloads' (see `reader`).
    reader: AmazonS3,
    /// Copies parts inside the bucket (`storage.s3.copy_parts`), for concatenations.
    copier: Option<copy::PartCopier>,
    /// The longest the bucket may keep a download waiting for its answer or its next bytes.
    silence: Duration,
    prefix: String,
    part_size: usize,
    parts_in_flight: usize,
    /// Memory for the parts being filled, shared by every upload.
    budget: buffer::Budget,
    instance: Uuid,
    pool: PgPool,
    /// Intents left to this instance's sweep that could not be marked so in Postgres (it was
    /// away): the sweep marks them once it answers (`repair`).
    deferred: std::sync::Mutex<Vec<Uuid>>,
    /// Tells other instances' sweeps that this one runs.
    _liveness: Liveness,
}

impl S3Store {
    /// Connects to the bucket and checks that it answers, so that a wrong endpoint or wrong
    /// credentials stop the start-up with a clear message.
    pub async fn open(
        settings: &S3Settings,
        instance: Uuid,
        pool: PgPool,
        liveness: Liveness,
    ) -> Result<Self, OpenError> {
        let client = client(settings).map_err(OpenError::Settings)?;
        let part_size = settings.part_size_bytes.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        let store = Self {
            client,
            reader: client::reader(settings).map_err(OpenError::Settings)?,
            copier: match settings.copy_parts {
                true => Some(copy::PartCopier::new(settings).map_err(OpenError::Copier)?),
                false => None,
            },
            silence: client::silence(settings),
            prefix: settings.prefix.clone(),
            part_size,
            parts_in_flight: settings.parts_in_flight.max(1),
            budget: buffer::Budget::new(
                settings.buffer_memory_bytes,
                part_size,
                &settings.spill_dir,
            ),
            instance,
            pool,
            deferred: std::sync::Mutex::default(),
            _liveness: liveness,
        };
        store
            .check_bucket()
            .await
            .map_err(|cause| OpenError::Unreachable {
                bucket: settings.bucket.clone(),
                endpoint: if settings.endpoint.is_empty() {
                    format!("AWS S3 ({})", settings.region)
                } else {
                    settings.endpoint.clone()
                },
                cause,
            })?;
        Ok(store)
    }

    pub fn instance(&self) -> Uuid {
        self.instance
    }

    fn key(&self, id: Uuid) -> Path {
        object_key(&self.prefix, id)
    }

    pub fn create(self: &Arc<Self>, id: Uuid, hold: in_flight::Shared) -> S3Writer {
        S3Writer::new(Arc::clone(self), id, hold)
    }

    /// Whether parts can be copied inside the bucket (`storage.s3.copy_parts`).
    pub fn copies(&self) -> bool {
        self.copier.is_some()
    }

    /// Copies object `source` whole into part `index` of multipart upload `upload_id` at
    /// `key`, inside the bucket.
    pub(super) async fn copy_part(
        &self,
        key: &Path,
        upload_id: &str,
        index: usize,
        source: Uuid,
    ) -> object_store::Result<PartId> {
        let copier = self
            .copier
            .as_ref()
            .ok_or_else(|| object_store::Error::NotSupported {
                source: "storage.s3.copy_parts is off".into(),
            })?;
        let source = self.key(source);
        let content_id = copier
            .copy(&self.client, key, upload_id, index, &source)
            .await?;
        Ok(PartId { content_id })
    }

    /// Starts the multipart upload a resumable upload's bytes go to.
    pub async fn start_resumable(&self, id: Uuid) -> io::Result<String> {
        Ok(self.client.create_multipart(&self.key(id)).await?)
    }

    /// Continues resumable upload `id` after its first `size` bytes, hashed into `hasher`.
    pub fn append(
        self: &Arc<Self>,
        id: Uuid,
        size: u64,
        hasher: Sha256,
        multipart: Multipart,
        expected: Expected,
    ) -> S3Appender {
        S3Appender::new(Arc::clone(self), id, size, hasher, multipart, expected)
    }

    /// Makes the object of a whole resumable upload: its tail becomes the last part. Done
    /// again after a failure, it finds the object made and checks its size.
    pub async fn complete_resumable(
        &self,
        id: Uuid,
        size: u64,
        multipart: Multipart,
    ) -> io::Result<()> {
        let key = self.key(id);
        let Multipart {
            upload_id,
            parts,
            tail,
            ..
        } = multipart;
        let made = if parts.is_empty() {
            // S3 refuses a multipart upload of no part at all; one PUT does for a small file.
            self.client.put(&key, PutPayload::from_bytes(tail)).await?;
            self.abort(&key, &upload_id).await
        } else {
            let mut parts: Vec<PartId> = parts
                .into_iter()
                .map(|content_id| PartId { content_id })
                .collect();
            self.complete_parts(&key, &upload_id, &mut parts, tail)
                .await
        };
        self.completed(&key, size, made).await
    }

    /// What completing a multipart upload of `size` bytes at `key` came to. A completion whose
    /// answer was lost may have succeeded: its retry then gets `NotFound` (the upload is gone),
    /// or no retry came. Whatever the error, the object is made if it is there with `size` bytes
    /// (each key is a new file's, never an older object's).
    pub(super) async fn completed(
        &self,
        key: &Path,
        size: u64,
        made: object_store::Result<()>,
    ) -> io::Result<()> {
        let Err(error) = made else {
            return Ok(());
        };
        match self.client.head(key).await {
            Ok(stored) if stored.size == size => {
                tracing::info!(%key, size, %error, "the multipart upload was completed despite the error");
                Ok(())
            }
            Ok(stored) => Err(io::Error::other(format!(
                "the multipart upload failed ({error}) and the object holds {} bytes, not {size}",
                stored.size
            ))),
            Err(_) => Err(error.into()),
        }
    }

    async fn complete_parts(
        &self,
        key: &Path,
        upload_id: &String,
        parts: &mut Vec<PartId>,
        tail: bytes::Bytes,
    ) -> object_store::Result<()> {
        if !tail.is_empty() {
            let last = self
                .client
                .put_part(key, upload_id, parts.len(), PutPayload::from_bytes(tail))
                .await?;
            parts.push(last);
        }
        self.client
            .complete_multipart(key, upload_id, std::mem::take(parts))
            .await
            .map(drop)
    }

    async fn abort(&self, key: &Path, upload_id: &String) -> object_store::Result<()> {
        match self.client.abort_multipart(key, upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Removes whatever a resumable upload left in the bucket.
    pub async fn discard_resumable(&self, id: Uuid, upload_id: &str) -> io::Result<()> {
        self.remove_object(id, Some(upload_id)).await
    }

    /// `length` bytes of the object from `start`. The bucket may be silent for `silence` at
    /// most, counted only while a read waits for it: a client that reads slowly (the body
    /// waits for it, full buffers between) never makes the download fail.
    pub async fn read(&self, id: Uuid, start: u64, length: u64) -> io::Result<ByteStream> {
        if length == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + length)),
            ..GetOptions::default()
        };
        let key = self.key(id);
        let get = self.reader.get_opts(&key, options);
        let object = tokio::time::timeout(self.silence, get)
            .await
            .map_err(|_| client::silent())??;
        let silence = self.silence;
        let body = object.into_stream().map_err(io::Error::from);
        Ok(
            futures_util::stream::unfold(Some(body), move |body| async move {
                let mut body = body?;
                match tokio::time::timeout(silence, body.next()).await {
                    Ok(Some(chunk)) => Some((chunk, Some(body))),
                    Ok(None) => None,
                    Err(_) => Some((Err(client::silent()), None)),
                }
            })
            .boxed(),
        )
    }

    /// Records, in the transaction that deletes the row, that the object is to go.
    pub async fn begin_delete(
        self: &Arc<Self>,
        id: Uuid,
        tx: &mut PgConnection,
    ) -> sqlx::Result<Intent> {
        self.begin_removal(id, None, tx).await
    }

    /// Records, in the transaction that deletes a resumable upload's row, that its multipart
    /// upload is to be aborted: a failure after the commit leaves the intent to the sweep.
    pub async fn begin_discard(
        self: &Arc<Self>,
        id: Uuid,
        upload_id: &str,
        tx: &mut PgConnection,
    ) -> sqlx::Result<Intent> {
        self.begin_removal(id, Some(upload_id), tx).await
    }

    async fn begin_removal(
        self: &Arc<Self>,
        id: Uuid,
        upload_id: Option<&str>,
        tx: &mut PgConnection,
    ) -> sqlx::Result<Intent> {
        intent::insert(tx, id, self.instance, upload_id).await?;
        let upload_id = upload_id.map(str::to_owned);
        Ok(Intent::for_delete(Arc::clone(self), id, upload_id))
    }

    /// The readiness check: the bucket takes a write from us and forgets it again.
    pub async fn probe(&self) -> io::Result<()> {
        self.check_bucket().await.map_err(io::Error::from)
    }

    /// Where the readiness probe's objects go; one whose delete failed is removed by a sweep
    /// once it is a minute old (`repair`).
    fn probes(&self) -> Path {
        Path::from(format!("{}probes", self.prefix))
    }

    /// Writes and removes a small object of its own (a HEAD could not tell a missing bucket
    /// from a missing key), proving the address, the bucket, the signature and the right to
    /// write.
    async fn check_bucket(&self) -> object_store::Result<()> {
        let probe = self.probes().join(Uuid::new_v4().to_string());
        self.client
            .put(&probe, PutPayload::from_static(b"probe"))
            .await?;
        self.client.delete(&probe).await
    }

    async fn remove_object(&self, id: Uuid, upload_id: Option<&str>) -> io::Result<()> {
        let key = self.key(id);
        if let Some(upload_id) = upload_id {
            self.abort(&key, &upload_id.to_owned()).await?;
        }
        match self.client.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes the object (aborting its upload), then its intent; what fails is left to this
    /// instance's sweep.
    async fn remove_and_forget(&self, id: Uuid, upload_id: Option<&str>) {
        let removed = self.remove_object(id, upload_id).await;
        let forgotten = match removed {
            Ok(()) => sqlx::query!("DELETE FROM storage_intents WHERE object_id = $1", id)
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(io::Error::other),
            Err(error) => Err(error),
        };
        if let Err(error) = forgotten {
            tracing::warn!(%id, %error, "could not remove an object from the bucket; the sweep will");
            self.defer(id).await;
        }
    }

    /// Leaves intent `id` to this instance's sweep: marked in Postgres, or, when Postgres cannot
    /// be told, in memory until the sweep can mark it.
    async fn defer(&self, id: Uuid) {
        let marked = sqlx::query!(
            "UPDATE storage_intents SET deferred = true WHERE object_id = $1",
            id
        )
        .execute(&self.pool)
        .await;
        if marked.is_err() {
            self.deferred.lock().expect("never poisoned").push(id);
        }
    }
}

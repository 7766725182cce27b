//! Where the bytes live: the local filesystem (`fs`) or an S3-compatible bucket (`s3`), chosen
//! by `storage.kind`. Handlers see only this narrow interface: create a streaming writer that
//! yields size and SHA-256, read a byte range, begin a delete, probe; and every change is held by
//! a `Pending` guard until its row's fate is known, so that an object and its row appear and go
//! together. The sweep settles what a crash left.
//!
//! An enum rather than a trait object: the backends' methods are async, and the two variants
//! are all there is.

/// Calls what both backends have alike on whichever a storage type holds: the one shape of the
/// dispatch, so that each method names the call once.
macro_rules! each_backend {
    ($value:expr, $inner:ident => $call:expr) => {
        match $value {
            Self::Fs($inner) => $call,
            Self::S3($inner) => $call,
        }
    };
}

/// The `backend` label of metrics and spans, for a type with an `Fs` and an `S3` variant.
macro_rules! backend_label {
    ($($vis:ident)?) => {
        $($vis)? fn backend(&self) -> &'static str {
            match self {
                Self::Fs(_) => "fs",
                Self::S3(_) => "s3",
            }
        }
    };
}

pub mod fs;
pub mod partial;
pub mod resumable;
pub mod s3;

use std::{io, sync::Arc};

use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use sqlx::{PgConnection, PgPool, postgres::PgConnectOptions};
use uuid::Uuid;

use crate::base::{
    configuration::{StorageKind, StorageSettings},
    db, in_flight,
    liveness::Liveness,
    telemetry::metrics::{batch_written, durable, observed},
};

/// An object's bytes as they are read.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Bytes of an object appended to another (`ObjectWriter::append_object`) written at a time.
const APPEND_BATCH_BYTES: usize = 1024 * 1024;

/// What a writer learnt of the bytes it stored.
#[derive(Debug)]
pub struct Written {
    pub size: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug)]
pub enum Storage {
    Fs(Arc<fs::FsStore>),
    S3(Arc<s3::S3Store>),
}

/// What the storage's pass of the sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    pub kept: usize,
    pub removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("could not read or repair the storage")]
    Storage(#[from] std::io::Error),
    #[error("could not ask the database about an object change")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("could not open the storage root {}", .0.display())]
    Root(std::path::PathBuf, #[source] io::Error),
    #[error(transparent)]
    Bucket(#[from] s3::OpenError),
    #[error("could not take this instance's liveness lock in Postgres")]
    Liveness(#[source] sqlx::Error),
}

impl Storage {
    /// Opens the configured backend. `liveness`: how to reach Postgres for the connection that
    /// tells other instances this one runs (the bucket has no lock files).
    pub async fn open(
        settings: &StorageSettings,
        pool: &PgPool,
        liveness: PgConnectOptions,
    ) -> Result<Self, OpenError> {
        match settings.kind {
            StorageKind::Fs => {
                let root = settings.root.clone();
                let mut store = tokio::task::spawn_blocking(move || fs::FsStore::open(&root))
                    .await
                    .map_err(io::Error::other)
                    .and_then(|opened| opened)
                    .map_err(|e| OpenError::Root(settings.root.clone(), e))?;
                // Resumable uploads' leases name their instance in Postgres, on either backend.
                let liveness = Liveness::hold(liveness, store.instance())
                    .await
                    .map_err(OpenError::Liveness)?;
                store.hold(liveness);
                Ok(Self::Fs(Arc::new(store)))
            }
            StorageKind::S3 => {
                let instance = Uuid::now_v7();
                let liveness = Liveness::hold(liveness, instance)
                    .await
                    .map_err(OpenError::Liveness)?;
                let store =
                    s3::S3Store::open(&settings.s3, instance, pool.clone(), liveness).await?;
                Ok(Self::S3(Arc::new(store)))
            }
        }
    }

    /// This process's id among the instances sharing the storage.
    pub fn instance(&self) -> Uuid {
        each_backend!(self, store => store.instance())
    }

    /// Starts writing a new object; `hold` counts the upload as in flight until an abandoned
    /// object has been removed.
    pub fn create(&self, id: Uuid, hold: in_flight::Shared) -> ObjectWriter {
        match self {
            Self::Fs(store) => ObjectWriter::Fs(store.create(id, hold)),
            Self::S3(store) => ObjectWriter::S3(store.create(id, hold)),
        }
    }

    backend_label!(pub);

    /// The storage's pass of the sweep: repairs what interrupted work left behind (the row
    /// decides each object's fate: present → kept; absent → removed). Returns what it did and
    /// the instances running, this one included.
    pub async fn repair(&self, pool: &PgPool) -> Result<(Repaired, Vec<Uuid>), RepairError> {
        match self {
            Self::Fs(store) => fs::repair::repair(store, pool).await,
            Self::S3(store) => store.repair().await,
        }
    }

    /// `length` bytes of the object from `start`; `NotFound` when it is gone.
    pub async fn read(&self, id: Uuid, start: u64, length: u64) -> io::Result<ByteStream> {
        observed(self.backend(), "read", async {
            each_backend!(self, store => store.read(id, start, length).await)
        })
        .await
    }

    /// Prepares the object's removal inside `tx`, the transaction that deletes its row. `None`
    /// when the object is already gone.
    pub async fn begin_delete(
        &self,
        id: Uuid,
        tx: &mut PgConnection,
    ) -> Result<Option<Pending>, sqlx::Error> {
        observed(self.backend(), "delete", async {
            match self {
                Self::Fs(store) => Ok(store.remove_to_journal(id).await?.map(Pending::Fs)),
                Self::S3(store) => Ok(Some(Pending::S3(store.begin_delete(id, tx).await?))),
            }
        })
        .await
    }

    /// The readiness check: a synced write on disk, an answer from the bucket.
    pub async fn probe(&self) -> io::Result<()> {
        observed(self.backend(), "probe", async {
            each_backend!(self, store => store.probe().await)
        })
        .await
    }
}

/// The request side of an upload. Dropping it before `finish` abandons the object.
pub enum ObjectWriter {
    Fs(fs::FsWriter),
    S3(s3::S3Writer),
}

impl ObjectWriter {
    backend_label!();

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        batch_written(self.backend(), async {
            each_backend!(self, writer => writer.write(batch).await)
        })
        .await
    }

    /// Appends object `source` (`length` bytes, read as `bytes`) to the object being written:
    /// in a bucket that copies parts, copied inside it where it can be a part of its own, its
    /// bytes then only counted and hashed; else written. `observe` sees every chunk.
    pub async fn append_object(
        &mut self,
        source: Uuid,
        length: u64,
        mut bytes: ByteStream,
        mut observe: impl FnMut(&Bytes),
    ) -> io::Result<()> {
        let copied = match self {
            Self::Fs(_) => false,
            Self::S3(writer) => writer.copy_object(source, length).await?,
        };
        let (mut batch, mut batched) = (Vec::new(), 0);
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk?;
            observe(&chunk);
            batched += chunk.len();
            batch.push(chunk);
            if batched >= APPEND_BATCH_BYTES {
                self.append_batch(copied, std::mem::take(&mut batch))
                    .await?;
                batched = 0;
            }
        }
        self.append_batch(copied, batch).await
    }

    async fn append_batch(&mut self, copied: bool, batch: Vec<Bytes>) -> io::Result<()> {
        match self {
            Self::S3(writer) if copied => writer.count(batch).await,
            _ => self.write(batch).await,
        }
    }

    /// Stores the last batch and makes the object durable; the returned guard removes it again
    /// unless its row is committed.
    pub async fn finish(self, last: Vec<Bytes>) -> io::Result<(Written, Pending)> {
        durable(self.backend(), async {
            match self {
                Self::Fs(writer) => {
                    let (written, entry) = writer.finish(last).await?;
                    Ok((written, Pending::Fs(entry)))
                }
                Self::S3(writer) => {
                    let (written, intent) = writer.finish(last).await?;
                    Ok((written, Pending::S3(intent)))
                }
            }
        })
        .await
    }
}

/// What became of the row change an object change waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// Committed: the object stays as it now is.
    Committed,
    /// Unknown (the connection broke mid-statement): the sweep decides once the database
    /// answers.
    Unknown,
    /// The row change did not happen: the object change is undone.
    NotCommitted,
}

impl RowOutcome {
    /// The outcome of a statement that wrote rows (`Some`), wrote none because what it needed
    /// was gone (`None`), or failed.
    pub fn of<T>(result: &Result<Option<T>, sqlx::Error>) -> Self {
        match result {
            Ok(Some(_)) => Self::Committed,
            Ok(None) => Self::NotCommitted,
            Err(error) if db::outcome_unknown(error) => Self::Unknown,
            Err(_) => Self::NotCommitted,
        }
    }
}

/// Settles the object changes of one commit by its outcome. After a commit, what is left to
/// do (an upload's journal entry) is done in the background, so that the answer does not wait
/// for it.
pub async fn settle_all(changes: Vec<Pending>, outcome: RowOutcome) {
    for change in changes {
        match outcome {
            RowOutcome::Committed => change.commit_in_background(),
            outcome => change.settle(outcome).await,
        }
    }
}

/// An object change waiting for its row's outcome. Dropped unsettled, it is undone in the
/// background.
#[derive(Debug)]
pub enum Pending {
    Fs(fs::JournalEntry),
    S3(s3::Intent),
}

impl Pending {
    /// The intent the row's statement must claim, if the backend keeps them in Postgres.
    pub fn claim(&self) -> Option<Uuid> {
        match self {
            Self::Fs(_) => None,
            Self::S3(intent) => intent.claim(),
        }
    }

    /// Settles the change by its row's outcome; after a commit, what is left to do (a delete's
    /// bytes) is done before this returns.
    pub async fn settle(self, outcome: RowOutcome) {
        match outcome {
            RowOutcome::Committed => self.commit().await,
            RowOutcome::Unknown => self.defer_to_sweep().await,
            RowOutcome::NotCommitted => self.abandon().await,
        }
    }

    /// The row change is committed: keep the object as it now is.
    async fn commit(self) {
        each_backend!(self, entry => entry.commit().await)
    }

    /// As `commit`, without waiting for the clean-up.
    fn commit_in_background(self) {
        each_backend!(self, entry => entry.commit_in_background())
    }

    async fn defer_to_sweep(self) {
        match self {
            Self::Fs(entry) => entry.defer_to_sweep().await,
            Self::S3(intent) => intent.defer_to_sweep().await,
        }
    }

    async fn abandon(self) {
        each_backend!(self, entry => entry.abandon().await)
    }
}

//! Objects on the local filesystem, laid out so that a crash at any point can be repaired.
//!
//! ```text
//! {root}/objects/ab/cd/<id>      committed objects (ab/cd: the last hex digits of the id)
//! {root}/tmp/<instance>.lock     held (flock) by a running instance for its whole life
//! {root}/tmp/<instance>/<id>     that instance's journal: uploads being written, deletes under way
//! {root}/tmp/pending/<id>        journal entries whose database outcome was unknown
//! {root}/uploads/<id>            resumable uploads under way (their row says how far)
//! ```
//!
//! A journal entry is a hard link to the object's bytes, named by the object's id. Whatever
//! happened to the process, the database row decides the entry's fate (see `sweep`): row
//! present → the object must exist; row absent → the object must not.

mod journal;
pub mod repair;
mod writer;

use std::{
    fs::{self, File},
    io::{self, SeekFrom},
    path::{Path, PathBuf},
};

use futures_util::StreamExt;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::{
    base::{in_flight, liveness::Liveness},
    storage::ByteStream,
};

/// Reads of 64 KiB: fewer trips through the file and the socket than the 4 KiB default.
const READ_CHUNK: usize = 64 * 1024;

pub use journal::JournalEntry;
use uuid::Uuid;
pub use writer::{FsAppender, FsWriter};

const OBJECTS: &str = "objects";
const TMP: &str = "tmp";
const PENDING: &str = "pending";
const UPLOADS: &str = "uploads";

#[derive(Debug)]
pub struct FsStore {
    objects: PathBuf,
    tmp: PathBuf,
    work: PathBuf,
    pending: PathBuf,
    uploads: PathBuf,
    instance: Uuid,
    /// Holding this lock tells other instances' sweeps that `work` is alive.
    _lock: File,
    /// Tells other instances that this one runs (see `instances`).
    liveness: Option<Liveness>,
    removals: journal::Removals,
}

impl FsStore {
    /// Creates the layout under `root` if needed and claims a journal directory for this process.
    /// Blocking: call it at start-up.
    pub fn open(root: &Path) -> io::Result<Self> {
        let tmp = root.join(TMP);
        let pending = tmp.join(PENDING);
        let objects = root.join(OBJECTS);
        let uploads = root.join(UPLOADS);
        fs::create_dir_all(&pending)?;
        fs::create_dir_all(&uploads)?;
        // The first level of the fan-out is made, durably, here: an object whose second-level
        // directory is new then syncs only that directory's parent, not two levels.
        for first in 0..=u8::MAX {
            fs::create_dir_all(objects.join(format!("{first:02x}")))?;
        }
        File::open(&objects)?.sync_all()?;
        let instance = Uuid::now_v7();
        // The lock exists before the directory, so a sweep never mistakes a starting instance's
        // directory for a dead one.
        let lock = File::create(tmp.join(format!("{instance}.lock")))?;
        lock.try_lock().map_err(io::Error::other)?;
        let work = tmp.join(instance.to_string());
        fs::create_dir(&work)?;
        Ok(Self {
            objects,
            tmp,
            work,
            pending,
            uploads,
            instance,
            _lock: lock,
            liveness: None,
            removals: journal::Removals::default(),
        })
    }

    /// Keeps this instance's liveness for as long as the store lives.
    pub fn hold(&mut self, liveness: Liveness) {
        self.liveness = Some(liveness);
    }

    /// Where the object `id` lives: fanned out by the id's last (random) hex digits, because
    /// the first ones of a UUID v7 are a timestamp and would crowd one directory.
    pub fn object_path(&self, id: Uuid) -> PathBuf {
        let hex = id.simple().to_string();
        self.objects
            .join(&hex[28..30])
            .join(&hex[30..32])
            .join(id.to_string())
    }

    /// This process's id among the instances sharing the storage.
    pub fn instance(&self) -> Uuid {
        self.instance
    }

    fn journal_path(&self, id: Uuid) -> PathBuf {
        self.work.join(id.to_string())
    }

    /// Starts writing a new object. Its bytes go to the journal until `ObjectWriter::finish`;
    /// `hold` counts the upload as in flight until an abandoned object has been removed.
    pub fn create(&self, id: Uuid, hold: in_flight::Shared) -> FsWriter {
        let entry =
            JournalEntry::for_upload(self.journal_path(id), self.object_path(id), self, hold);
        FsWriter::new(entry)
    }

    fn partial_path(&self, id: Uuid) -> PathBuf {
        self.uploads.join(id.to_string())
    }

    /// Continues resumable upload `id` after its first `size` bytes, hashed into `hasher`.
    pub async fn append(&self, id: Uuid, size: u64, hasher: Sha256) -> io::Result<FsAppender> {
        FsAppender::open(self.partial_path(id), size, hasher).await
    }

    /// Puts a whole resumable upload at its object's path, as an upload's writer does: the
    /// returned entry removes it from there again unless its row is committed. Its own file
    /// stays until `remove_partial`, so that a failed commit can be tried again.
    pub async fn complete_partial(
        &self,
        id: Uuid,
        hold: in_flight::Shared,
    ) -> io::Result<JournalEntry> {
        let entry =
            JournalEntry::for_upload(self.journal_path(id), self.object_path(id), self, hold);
        let partial = self.partial_path(id);
        let (journal, object) = (entry.path().to_owned(), entry.object().to_owned());
        tokio::task::spawn_blocking(move || {
            // Left by an attempt that failed: no row can own it while the upload is resumable.
            remove_if_present(&journal)?;
            remove_if_present(&object)?;
            link_durably(&partial, &journal)?;
            link_durably(&journal, &object)
        })
        .await??;
        Ok(entry)
    }

    /// The first `length` bytes of resumable upload `id` (a whole partial upload's, for a final
    /// upload to concatenate).
    pub async fn read_partial(&self, id: Uuid, length: u64) -> io::Result<ByteStream> {
        // An upload of no bytes never had a file.
        if length == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let file = tokio::fs::File::open(self.partial_path(id)).await?;
        Ok(ReaderStream::with_capacity(file.take(length), READ_CHUNK).boxed())
    }

    /// Removes a resumable upload's file.
    pub async fn remove_partial(&self, id: Uuid) -> io::Result<()> {
        let path = self.partial_path(id);
        tokio::task::spawn_blocking(move || remove_if_present(&path)).await?
    }

    /// The resumable uploads that have a file, for the sweep to compare with their rows.
    pub async fn partials(&self) -> io::Result<Vec<Uuid>> {
        let dir = self.uploads.clone();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for item in fs::read_dir(dir)? {
                let name = item?.file_name();
                ids.extend(name.to_str().and_then(|n| Uuid::parse_str(n).ok()));
            }
            Ok(ids)
        })
        .await?
    }

    /// Moves a committed object into the journal ahead of deleting its row. `None` when the
    /// object is already gone.
    pub async fn remove_to_journal(&self, id: Uuid) -> io::Result<Option<JournalEntry>> {
        let entry = JournalEntry::for_delete(self.journal_path(id), self.object_path(id), self);
        tokio::task::spawn_blocking(move || {
            match fs::hard_link(entry.object(), entry.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                other => other?,
            }
            fs::remove_file(entry.object())?;
            sync_parent(entry.object())?;
            Ok(Some(entry))
        })
        .await?
    }

    /// `length` bytes of the object from `start`. Once open, the file stays whole however it
    /// is unlinked.
    pub async fn read(&self, id: Uuid, start: u64, length: u64) -> io::Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.object_path(id)).await?;
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        Ok(ReaderStream::with_capacity(file.take(length), READ_CHUNK).boxed())
    }

    /// Writes, syncs and removes a probe file: the readiness check. Each probe has a file of
    /// its own, so that concurrent probes do not remove each other's.
    pub async fn probe(&self) -> io::Result<()> {
        let path = self.work.join(format!(".probe-{}", Uuid::new_v4()));
        tokio::task::spawn_blocking(move || {
            fs::write(&path, b"probe")?;
            File::open(&path)?.sync_all()?;
            fs::remove_file(&path)
        })
        .await?
    }
}

/// Makes a directory entry durable: fsync the directory that holds `path`.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Links `from` to `to`, creating (and syncing) its second-level fan-out directory when new (the
/// first level exists from `open`). The new entry itself is durable only once its directory is
/// synced.
fn link(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to.parent().expect("object paths have a directory");
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        sync_parent(dir)?;
    }
    fs::hard_link(from, to)
}

fn link_durably(from: &Path, to: &Path) -> io::Result<()> {
    link(from, to)?;
    sync_parent(to)
}

/// Removes a file that may already be gone.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

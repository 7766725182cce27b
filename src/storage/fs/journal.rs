//! A journal entry guards one object change until its database outcome is known.

use std::{
    fs, io, mem,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::{FsStore, link_durably, remove_if_present};
use crate::base::in_flight;

/// What an entry undoes when it is dropped without `commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// A new upload: the object must not outlive a row that was never written.
    RemoveObject,
    /// A delete: the object must come back, since its row is still there.
    RestoreObject,
}

#[derive(Debug)]
pub struct JournalEntry {
    path: PathBuf,
    object: PathBuf,
    pending: PathBuf,
    undo: Undo,
    settled: bool,
    /// Keeps the upload counted as in flight until an abandoned object is gone.
    hold: Option<in_flight::Shared>,
    removals: Removals,
}

impl JournalEntry {
    pub(super) fn for_upload(
        path: PathBuf,
        object: PathBuf,
        storage: &FsStore,
        hold: in_flight::Shared,
    ) -> Self {
        let mut entry = Self::new(path, object, storage, Undo::RemoveObject);
        entry.hold = Some(hold);
        entry
    }

    pub(super) fn for_delete(path: PathBuf, object: PathBuf, storage: &FsStore) -> Self {
        Self::new(path, object, storage, Undo::RestoreObject)
    }

    fn new(path: PathBuf, object: PathBuf, storage: &FsStore, undo: Undo) -> Self {
        let pending = storage
            .pending
            .join(path.file_name().expect("journal paths name an id"));
        Self {
            path,
            object,
            pending,
            undo,
            settled: false,
            hold: None,
            removals: storage.removals.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn object(&self) -> &Path {
        &self.object
    }

    /// The database change is committed: keep the object as it now is.
    pub async fn commit(mut self) {
        self.settled = true;
        let path = self.path.clone();
        blocking(move || remove_if_present(&path), &self.path).await;
    }

    /// As `commit`, but the entry is removed in the background (holding the upload's place in
    /// the in-flight count), so that the answer does not wait for it. A crash before then
    /// leaves an entry whose row exists, which the sweep settles by keeping the object.
    pub fn commit_in_background(mut self) {
        self.settled = true;
        let path = mem::take(&mut self.path);
        self.removals.push(path, self.hold.take());
    }

    /// The database outcome is unknown (the connection broke mid-statement): leave the entry to
    /// the sweep, which decides once the database answers again.
    pub async fn defer_to_sweep(mut self) {
        self.settled = true;
        let (path, pending) = (self.path.clone(), self.pending.clone());
        blocking(move || fs::rename(&path, &pending), &self.path).await;
    }

    /// The database change did not happen: undo the object change before answering.
    pub async fn abandon(mut self) {
        self.settled = true;
        let undo = self.undo_job();
        blocking(undo, &self.path).await;
    }

    fn undo_job(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let (undo, path, object) = (self.undo, self.path.clone(), self.object.clone());
        move || match undo {
            // Unlinking the journal first makes a late link by the writer fail with NotFound.
            Undo::RemoveObject => {
                remove_if_present(&path)?;
                remove_if_present(&object)
            }
            Undo::RestoreObject => {
                link_durably(&path, &object)?;
                remove_if_present(&path)
            }
        }
    }
}

impl Drop for JournalEntry {
    /// Dropped unsettled (the request was cancelled or failed): the undo runs in the background.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let undo = self.undo_job();
        in_background(undo, &self.path, self.hold.take());
    }
}

/// Runs filesystem work on the blocking pool without waiting for it, holding the upload's place
/// in the in-flight count until it is done.
fn in_background(
    work: impl FnOnce() -> io::Result<()> + Send + 'static,
    path: &Path,
    hold: Option<in_flight::Shared>,
) {
    let path = path.to_owned();
    let job = move || {
        log_failure(work(), &path);
        drop(hold);
    };
    spawn_or_run(job);
}

/// Starts a job on the blocking pool without waiting for it; outside a runtime (a drop at
/// shutdown) it runs here and now.
fn spawn_or_run(job: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(job)),
        Err(_) => job(),
    }
}

/// The entries of committed changes, removed on the blocking pool by one job for as long as
/// more keep coming: uploads committed together (a group commit) cost one trip, not one each.
#[derive(Debug, Clone, Default)]
pub(super) struct Removals(Arc<Mutex<Queue>>);

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<(PathBuf, Option<in_flight::Shared>)>,
    /// A job is on the blocking pool and will take what is queued.
    draining: bool,
}

impl Removals {
    fn push(&self, path: PathBuf, hold: Option<in_flight::Shared>) {
        let mut queue = self.0.lock().expect("the removal queue is never poisoned");
        queue.entries.push((path, hold));
        if mem::replace(&mut queue.draining, true) {
            return;
        }
        drop(queue);
        let removals = self.clone();
        spawn_or_run(move || removals.drain());
    }

    fn drain(&self) {
        loop {
            let entries = {
                let mut queue = self.0.lock().expect("the removal queue is never poisoned");
                if queue.entries.is_empty() {
                    queue.draining = false;
                    return;
                }
                mem::take(&mut queue.entries)
            };
            for (path, hold) in entries {
                log_failure(remove_if_present(&path), &path);
                drop(hold);
            }
        }
    }
}

/// Runs filesystem work on the blocking pool and logs its failure.
async fn blocking(work: impl FnOnce() -> io::Result<()> + Send + 'static, path: &Path) {
    let result = tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
    log_failure(result, path);
}

fn log_failure(result: io::Result<()>, path: &Path) {
    if let Err(error) = result {
        // The sweep retries from the journal; nothing more can be done here.
        tracing::error!(path = %path.display(), %error, "journal cleanup failed");
    }
}

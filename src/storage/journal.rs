//! A journal entry guards one object change until its database outcome is known.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{Storage, link_durably, remove_if_present};

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
}

impl JournalEntry {
    pub(super) fn for_upload(path: PathBuf, object: PathBuf, storage: &Storage) -> Self {
        Self::new(path, object, storage, Undo::RemoveObject)
    }

    pub(super) fn for_delete(path: PathBuf, object: PathBuf, storage: &Storage) -> Self {
        Self::new(path, object, storage, Undo::RestoreObject)
    }

    fn new(path: PathBuf, object: PathBuf, storage: &Storage, undo: Undo) -> Self {
        let pending = storage
            .pending
            .join(path.file_name().expect("journal paths name an id"));
        Self {
            path,
            object,
            pending,
            undo,
            settled: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn object(&self) -> &Path {
        &self.object
    }

    /// The database change is committed: keep the object as it now is.
    pub fn commit(mut self) {
        self.settled = true;
        log_failure(remove_if_present(&self.path), &self.path);
    }

    /// The database outcome is unknown (the connection broke mid-statement): leave the entry to
    /// the sweep, which decides once the database answers again.
    pub fn defer_to_sweep(mut self) {
        self.settled = true;
        log_failure(fs::rename(&self.path, &self.pending), &self.path);
    }

    fn undo(&self) -> io::Result<()> {
        match self.undo {
            // Unlinking the journal first makes a late link by the writer fail with NotFound.
            Undo::RemoveObject => {
                remove_if_present(&self.path)?;
                remove_if_present(&self.object)
            }
            Undo::RestoreObject => {
                link_durably(&self.path, &self.object)?;
                remove_if_present(&self.path)
            }
        }
    }
}

impl Drop for JournalEntry {
    fn drop(&mut self) {
        if !self.settled {
            log_failure(self.undo(), &self.path);
        }
    }
}

fn log_failure(result: io::Result<()>, path: &Path) {
    if let Err(error) = result {
        // The sweep retries from the journal; nothing more can be done here.
        tracing::error!(path = %path.display(), %error, "journal cleanup failed");
    }
}

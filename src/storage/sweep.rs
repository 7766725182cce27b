//! Repairs what interrupted work left behind: journals of dead instances and entries whose
//! database outcome was unknown. The row decides: present → the object is kept (restored from
//! the journal if need be); absent → the object and the entry go.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use sqlx::PgPool;
use uuid::Uuid;

use super::{PENDING, Storage, link_durably, remove_if_present};
use crate::quota;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("could not read or repair the storage journal")]
    Storage(#[from] io::Error),
    #[error("could not ask the database about a journal entry")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub kept: usize,
    pub removed: usize,
}

/// One pass over the dead instances' journals and the pending entries, and over the quota
/// reservations of instances that are gone.
pub async fn sweep(storage: &Arc<Storage>, pool: &PgPool) -> Result<SweepReport, SweepError> {
    let listed_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(pool)
        .await?;
    let listing = Arc::clone(storage);
    let Orphans {
        entries,
        dead_dirs,
        alive,
    } = tokio::task::spawn_blocking(move || listing.orphaned_entries())
        .await
        .map_err(io::Error::other)??;
    let mut report = SweepReport::default();
    for path in entries {
        let id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| Uuid::parse_str(name).ok());
        let keep = match id {
            Some(id) => {
                sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM files WHERE id = $1) AS "exists!""#,
                    id
                )
                .fetch_one(pool)
                .await?
            }
            None => false,
        };
        let object = id.map(|id| storage.object_path(id));
        tokio::task::spawn_blocking(move || settle(&path, object.as_deref(), keep))
            .await
            .map_err(io::Error::other)??;
        if keep {
            report.kept += 1;
        } else {
            report.removed += 1;
        }
    }
    tokio::task::spawn_blocking(move || dead_dirs.iter().try_for_each(|dir| remove_dead(dir)))
        .await
        .map_err(io::Error::other)??;
    let released = quota::release_dead(pool, &alive, listed_at).await?;
    if released > 0 {
        tracing::info!(
            users = released,
            "gave back quota held by stopped instances"
        );
    }
    if report != SweepReport::default() {
        tracing::info!(
            kept = report.kept,
            removed = report.removed,
            "storage sweep repaired leftovers"
        );
    }
    Ok(report)
}

/// Sweeps every `interval` for as long as the returned task runs.
pub fn spawn_periodic(
    storage: Arc<Storage>,
    pool: PgPool,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = sweep(&storage, &pool).await {
                tracing::warn!(error = %crate::problem::cause_chain(&error), "storage sweep failed; will retry");
            }
        }
    })
}

struct Orphans {
    /// Journal entries no live process owns.
    entries: Vec<PathBuf>,
    /// The dead instances' journal directories that hold some of them.
    dead_dirs: Vec<PathBuf>,
    /// The instances running, this one included.
    alive: Vec<Uuid>,
}

impl Storage {
    fn orphaned_entries(&self) -> io::Result<Orphans> {
        let mut entries = files_in(&self.pending)?;
        let mut dead = Vec::new();
        let mut alive = vec![self.instance];
        for item in fs::read_dir(&self.tmp)? {
            let path = item?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_dir() || name == PENDING || name == self.instance.to_string() {
                continue;
            }
            if is_alive(&self.tmp.join(format!("{name}.lock")))? {
                alive.extend(Uuid::parse_str(name).ok());
                continue;
            }
            entries.extend(files_in(&path)?);
            dead.push(path);
        }
        Ok(Orphans {
            entries,
            dead_dirs: dead,
            alive,
        })
    }
}

fn files_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::read_dir(dir)?
        .map(|item| item.map(|item| item.path()))
        .collect()
}

/// An instance is alive while it holds the lock on its lock file.
fn is_alive(lock: &Path) -> io::Result<bool> {
    match fs::File::open(lock) {
        Ok(file) => Ok(file.try_lock().is_err()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn settle(entry: &Path, object: Option<&Path>, keep: bool) -> io::Result<()> {
    match object {
        Some(object) if keep && !object.exists() => link_durably(entry, object)?,
        Some(object) if !keep => remove_if_present(object)?,
        _ => {}
    }
    remove_if_present(entry)
}

fn remove_dead(dir: &Path) -> io::Result<()> {
    fs::remove_dir(dir)?;
    let lock = dir.with_extension("lock");
    remove_if_present(&lock)
}

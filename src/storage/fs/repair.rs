//! Repairs what interrupted work left behind: journals of dead instances and entries whose
//! database outcome was unknown. The row decides: present → the object is kept (restored from
//! the journal if need be); absent → the object and the entry go.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
};

use sqlx::PgPool;
use uuid::Uuid;

use super::{FsStore, PENDING, link_durably, remove_if_present};
use crate::storage::{RepairError, Repaired};

/// One pass over the dead instances' journals and the pending entries. Returns what it did and
/// the instances running, this one included.
pub async fn repair(
    storage: &Arc<FsStore>,
    pool: &PgPool,
) -> Result<(Repaired, Vec<Uuid>), RepairError> {
    let listing = Arc::clone(storage);
    let Orphans {
        entries,
        dead_dirs,
        alive,
    } = tokio::task::spawn_blocking(move || listing.orphaned_entries())
        .await
        .map_err(io::Error::other)??;
    let mut report = Repaired::default();
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
        tokio::task::spawn_blocking(move || settle_entry(&path, object.as_deref(), keep))
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
    Ok((report, alive))
}

struct Orphans {
    /// Journal entries no live process owns.
    entries: Vec<PathBuf>,
    /// The dead instances' journal directories that hold some of them.
    dead_dirs: Vec<PathBuf>,
    /// The instances running, this one included.
    alive: Vec<Uuid>,
}

impl FsStore {
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

fn settle_entry(entry: &Path, object: Option<&Path>, keep: bool) -> io::Result<()> {
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

//! The uploads a previous run left unfinished: file (path, size, modification time) → the
//! upload's path on the server (`/tus/{id}`), kept as JSON between runs.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("intake").join("uploads.json"))
}

/// A file as it was when its upload started: a changed file starts over.
pub fn key(file: &Path) -> io::Result<String> {
    let metadata = std::fs::metadata(file)?;
    let modified = metadata
        .modified()?
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let path = std::fs::canonicalize(file)?;
    Ok(format!("{} {} {modified}", path.display(), metadata.len()))
}

fn load(state: &Path) -> io::Result<BTreeMap<String, String>> {
    match std::fs::read(state) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

pub fn find(state: &Path, key: &str) -> io::Result<Option<String>> {
    Ok(load(state)?.remove(key))
}

/// Records (`Some`) or forgets (`None`) the upload of `key`; written whole, then renamed, so
/// that an interrupted write never loses the others.
pub fn remember(state: &Path, key: &str, upload: Option<&str>) -> io::Result<()> {
    let mut all = load(state)?;
    match upload {
        Some(upload) => all.insert(key.to_owned(), upload.to_owned()),
        None => all.remove(key),
    };
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = state.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(&all)?)?;
    std::fs::rename(temporary, state)
}

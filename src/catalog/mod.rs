//! The files table: each stored file's row, written by uploads and resumable uploads, read and
//! deleted by the files area; the share links that name them (`links`); and the files whose
//! lifetime is over (`lifetimes`).

pub mod committer;
pub mod lifetimes;
pub mod links;
pub mod record;

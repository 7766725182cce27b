//! The files table: each stored file's row, written by uploads and resumable uploads, read and
//! deleted by the files area; and the share links that name them (`links`).

pub mod committer;
pub mod links;
pub mod record;

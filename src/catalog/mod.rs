//! The files table: each stored file's row, written by uploads and resumable uploads, read and
//! deleted by the files area.

pub mod committer;
pub mod record;

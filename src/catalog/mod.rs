//! The files table: each stored file's row, written by uploads and resumable uploads, read and
//! deleted by the files area; the share links that name them (`links`); and the files whose
//! lifetime is over (`lifetimes`); and the upload links files come through (`upload_links`).

pub mod committer;
pub mod lifetimes;
pub mod links;
pub mod record;
pub mod upload_links;

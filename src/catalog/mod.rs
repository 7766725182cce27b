//! The files table: each stored file's row, written by uploads and resumable uploads (with the
//! `file.stored` event that announces it), read and deleted by the files area; listed a page at
//! a time (`listing`); the share links that name them (`links`); the files whose lifetime is
//! over (`lifetimes`); and the upload links files come through (`upload_links`).

pub mod committer;
pub mod lifetimes;
pub mod links;
pub mod listing;
pub mod record;
pub mod upload_links;

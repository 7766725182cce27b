//! What an upload link lets through: the server's limits narrowed by the link's, checked as the
//! bytes arrive, and once more, with the files counted, in the transaction that commits them.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Limits, content_type::AllowList};
use crate::{
    base::error::ApiError,
    catalog::{
        record::NewFile,
        upload_links::{self, UploadLink},
    },
};

/// The largest file that may come through `link` (all files, without one).
pub fn max_file_bytes(limits: &Limits, link: Option<&UploadLink>) -> u64 {
    let server = limits.settings.max_file_bytes;
    match link.and_then(|link| link.max_file_bytes) {
        Some(max) => server.min(max as u64),
        None => server,
    }
}

/// The types allowed through `link`: the server's, and the link's on top.
pub fn allow(limits: &Limits, link: Option<&UploadLink>) -> AllowList {
    match link {
        Some(link) => limits.allow.narrowed(&link.allowed_content_types),
        None => limits.allow.clone(),
    }
}

/// Refuses an upload through `link` before its bytes: the link has no file left to receive.
pub fn has_room(link: &UploadLink) -> Result<(), ApiError> {
    match link.max_files {
        Some(max) if link.full() => Err(ApiError::LinkFull(max)),
        _ => Ok(()),
    }
}

/// In the transaction that commits `files`, which came through link `id`: counts them, or says
/// why the link does not take them (revoked, expired, full, or a file beyond its limits).
pub async fn admit(
    conn: &mut PgConnection,
    id: Uuid,
    files: &[NewFile],
) -> Result<Option<ApiError>, sqlx::Error> {
    let Some(link) = upload_links::lock(conn, id).await? else {
        return Ok(Some(ApiError::NotFound("upload link")));
    };
    let allow = AllowList::new(&link.allowed_content_types);
    let refusal = if link.expired() {
        Some(ApiError::LinkExpired)
    } else if let Some(max) = link
        .max_files
        .filter(|&max| i64::from(link.files) + files.len() as i64 > i64::from(max))
    {
        Some(ApiError::LinkFull(max))
    } else if let Some(max) = link
        .max_file_bytes
        .filter(|&max| files.iter().any(|file| file.size > max))
    {
        Some(ApiError::FileTooLarge(max as u64))
    } else {
        files
            .iter()
            .find_map(|file| allow.check(&file.content_type).err())
    };
    if refusal.is_none() {
        upload_links::count(conn, id, files.len() as i32).await?;
    }
    Ok(refusal)
}

//! An upload looked up, or come back to, after its end: both protocols answer an upload that
//! became a file as that file, and finish one whose bytes are all stored but whose file was
//! not made (its commit failed).

use std::sync::Arc;

use actix_web::web;
use uuid::Uuid;

use super::{
    Resumable,
    creation::sends_bytes,
    holding::{Holding, lease},
    receive,
};
use crate::{
    access::auth::Owner,
    base::error::ApiError,
    catalog::record::{self as files, FileRecord},
    resumable::record::{self, Status},
};

/// An upload as an offset retrieval (`HEAD`) finds it.
pub enum Found {
    Upload(Status),
    File(FileRecord),
}

/// The upload `id` of `owner`, or the file it became. An upload whose every byte is stored but
/// whose file was not made is made a file now.
pub async fn look_up(
    resumable: &Resumable,
    id: Uuid,
    owner: Owner,
    protocol: &'static str,
) -> Result<Found, ApiError> {
    let Some(status) = record::status(&resumable.ingest.pool, id, owner.user_id).await? else {
        let file = files::find(&resumable.ingest.pool, owner.user_id, id)
            .await?
            .ok_or(ApiError::NotFound("upload"))?;
        return Ok(Found::File(file));
    };
    if status.expired {
        return Err(ApiError::UploadExpired);
    }
    let whole = status.ends_at_length && status.length == Some(status.received);
    if whole && !status.partial {
        return Ok(Found::File(
            finish_stored(resumable, id, owner, protocol).await?,
        ));
    }
    Ok(Found::Upload(status))
}

async fn finish_stored(
    resumable: &Resumable,
    id: Uuid,
    owner: Owner,
    protocol: &'static str,
) -> Result<FileRecord, ApiError> {
    let leased = lease(resumable, id, owner).await??;
    let in_flight = Arc::new(resumable.ingest.in_flight.enter());
    let mut holding = Holding::new(resumable, leased);
    let finished = match holding.upload.partial() {
        Ok(partial) => {
            let content_type = holding.upload.content_type.clone();
            receive::finish(&mut holding, partial, content_type, &in_flight, protocol).await
        }
        Err(error) => Err(error),
    };
    if finished.is_err() {
        holding.give_back().await;
    }
    finished
}

/// A PATCH of an upload that is a file already: a retry of its last PATCH that sends nothing
/// new gets the file, to answer as that PATCH was answered.
pub async fn replay(
    resumable: &Resumable,
    mut payload: web::Payload,
    owner: Owner,
    id: Uuid,
    offset: u64,
) -> Result<FileRecord, ApiError> {
    let file = files::find(&resumable.ingest.pool, owner.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("upload"))?;
    let size = file.size as u64;
    if offset != size {
        return Err(ApiError::OffsetMismatch {
            sent: offset,
            expected: size,
        });
    }
    if sends_bytes(&mut payload).await {
        return Err(ApiError::BeyondLength(size));
    }
    Ok(file)
}

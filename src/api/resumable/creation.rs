//! What both protocols do to create an upload: the owner's cap on unfinished uploads, the
//! quota for its length, its storage prepared and its row recorded; or, for an upload of no
//! bytes, the file made at once.

use actix_web::web;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{Resumable, fields::Metadata};
use crate::{
    access::quota::{self, Reservation},
    base::error::ApiError,
    catalog::record::{FileRecord, NewFile, Origin},
    events::hook::Proposal,
    ingest::{self, content_type::Detector},
    resumable::record::{self, NewUpload},
};

/// Asks the upload hook, if there is one, whether `upload` may start (before anything of it is
/// stored or reserved); `metadata` is its `Upload-Metadata`. The metadata the hook attaches to
/// its file.
pub(super) async fn admit(
    resumable: &Resumable,
    upload: &NewUpload,
    metadata: Metadata,
    protocol: &'static str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(hook) = &resumable.ingest.hook else {
        return Ok(None);
    };
    hook.admit(Proposal {
        user_id: upload.owner,
        user: None,
        upload_link: upload.upload_link,
        protocol,
        filename: &upload.filename,
        content_type: upload.declared_type.as_deref(),
        size: upload.length,
        metadata: metadata.pairs,
    })
    .await
}

/// An upload of no bytes is a file at once (clients send no `PATCH` for it): stored with its
/// row, like any small file, on either backend.
pub(super) async fn store_empty(
    resumable: &Resumable,
    upload: NewUpload,
    detector: Detector,
    mut payload: web::Payload,
    protocol: &'static str,
) -> Result<FileRecord, ApiError> {
    if sends_bytes(&mut payload).await {
        return Err(ApiError::BeyondLength(0));
    }
    let content_type = detector.content_type();
    resumable.ingest.limits.allow.check(&content_type)?;
    let file = NewFile {
        id: upload.id,
        filename: upload.filename,
        content_type,
        size: 0,
        sha256: Sha256::digest(b"").into(),
        inline: Some(Vec::new()),
        lifetime: upload.lifetime,
        upload_link: upload.upload_link,
        metadata: upload.file_metadata,
        origin: Origin::here(protocol),
    };
    let ingest = &resumable.ingest;
    let reservation =
        Reservation::begin(&ingest.quota, upload.owner, ingest.storage.instance(), None).await?;
    let mut stored =
        ingest::commit(ingest, upload.owner, reservation, vec![file], Vec::new()).await?;
    tracing::info!(id = %upload.id, "empty resumable upload stored");
    Ok(stored.remove(0))
}

/// Whether a body that should be empty brings bytes (read as far as its first chunk).
pub(super) async fn sends_bytes(payload: &mut web::Payload) -> bool {
    match payload.next().await {
        Some(Ok(chunk)) => !chunk.is_empty(),
        _ => false,
    }
}

/// Reserves the upload's quota, prepares its storage and records it, unless its owner holds as
/// many unfinished uploads as they may; undoes what was done if a step fails.
pub(super) async fn start(
    resumable: &Resumable,
    mut upload: NewUpload,
) -> Result<NewUpload, ApiError> {
    let max = resumable.settings.max_unfinished_per_user;
    // A first look, so that a flood of creations beyond the cap costs the bucket nothing.
    if max > 0 {
        let mut conn = resumable.ingest.pool.acquire().await?;
        refuse_beyond(&mut conn, upload.owner, max).await?;
    }
    let mut reservation =
        Reservation::resume(&resumable.ingest.quota, upload.id, upload.owner, 0, 0);
    if let Some(length) = upload.length {
        reservation.reserve_total(length).await?;
    }
    let recorded = async {
        upload.multipart_id = resumable.ingest.storage.start_resumable(upload.id).await?;
        // The look that counts: creations of one owner wait for each other here, so that
        // together they cannot pass the cap (and no connection waits on the bucket meanwhile).
        let mut tx = resumable.ingest.pool.begin().await?;
        if max > 0 {
            record::lock_creations(&mut tx, upload.owner).await?;
            refuse_beyond(&mut tx, upload.owner, max).await?;
        }
        record::create(&mut tx, &upload).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = recorded {
        let id = upload.id;
        if let Err(error) = quota::release(resumable.ingest.quota.pool(), id).await {
            tracing::warn!(%id, %error, "could not give back a failed creation's quota reservation");
        }
        let multipart = upload.multipart_id.as_deref();
        if let Err(error) = resumable
            .ingest
            .storage
            .discard_resumable(id, multipart)
            .await
        {
            tracing::warn!(%id, %error, "could not remove a failed creation's storage");
        }
        return Err(error);
    }
    tracing::info!(
        id = %upload.id,
        length = upload.length,
        deferred = upload.length.is_none(),
        "resumable upload created"
    );
    Ok(upload)
}

/// `429 too_many_unfinished_uploads` when `owner` holds `max` unfinished uploads, with the
/// seconds until the first of them expires.
async fn refuse_beyond(conn: &mut PgConnection, owner: i64, max: u64) -> Result<(), ApiError> {
    let unfinished = record::unfinished(conn, owner).await?;
    if unfinished.count < max as i64 {
        return Ok(());
    }
    let until = unfinished.earliest_expiry - OffsetDateTime::now_utc();
    Err(ApiError::TooManyUnfinished {
        max,
        retry_after: until.whole_seconds().max(1) as u64,
    })
}

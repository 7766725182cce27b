//! Removing resumable uploads: terminated by their client, or expired (by the sweep), and the
//! files of uploads that have no row any more.

use sqlx::PgPool;
use uuid::Uuid;

use super::record;
use crate::{
    access::quota,
    base::liveness,
    storage::{RepairError, RowOutcome, Storage},
};

/// Why an upload is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its client ended it (tus termination, IETF cancellation).
    Terminated,
    /// It was not finished in time; announced as `upload.expired`.
    Expired,
}

/// Removes an upload whose lease is held (`lease`): its row and its quota first, in one
/// transaction (with, on S3, the intent to abort its multipart upload, and the event of its
/// expiry), then its bytes. A
/// failure after the commit leaves bytes without a row, which the sweep removes (files on disk;
/// on S3 by the intent); the other order could leave a row whose bytes are gone.
pub async fn remove(
    pool: &PgPool,
    storage: &Storage,
    id: Uuid,
    lease: Uuid,
    multipart: Option<&str>,
    why: Removal,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if why == Removal::Expired {
        record::announce_expiry(&mut tx, id, lease).await?;
    }
    if !record::delete(&mut tx, id, lease).await? {
        return Ok(false);
    }
    quota::release(&mut *tx, id).await?;
    let discard = storage
        .begin_discard_resumable(id, multipart, &mut tx)
        .await?;
    tx.commit().await?;
    match discard {
        Some(intent) => intent.settle(RowOutcome::Committed).await,
        None => {
            if let Err(error) = storage.discard_resumable(id, multipart).await {
                tracing::warn!(%id, %error, "could not remove a resumable upload's bytes; the sweep will");
            }
        }
    }
    Ok(true)
}

/// Removes the uploads that expired (unless a running instance still writes to one), and on
/// disk the files of uploads that have no row. Returns how many uploads it removed.
#[tracing::instrument(name = "sweep.expired_uploads", skip_all)]
pub async fn expire(storage: &Storage, pool: &PgPool) -> Result<usize, RepairError> {
    let expired = sqlx::query!(
        r#"
        SELECT id, multipart_id, lease, lease_holder FROM resumable_uploads
        WHERE expires_at <= now() ORDER BY expires_at LIMIT 1000
        "#
    )
    .fetch_all(pool)
    .await?;
    let holders: Vec<Uuid> = expired.iter().filter_map(|u| u.lease_holder).collect();
    let running = liveness::running(pool, &holders).await?;
    let mut removed = 0;
    for upload in expired {
        if upload
            .lease_holder
            .is_some_and(|holder| running.contains(&holder))
        {
            continue;
        }
        // The lease as it was read: a PATCH that took it since keeps the upload.
        let taken = sqlx::query_scalar!(
            r#"
            UPDATE resumable_uploads SET lease = gen_random_uuid(), lease_holder = $3
            WHERE id = $1 AND lease IS NOT DISTINCT FROM $2 RETURNING lease AS "lease!"
            "#,
            upload.id,
            upload.lease,
            storage.instance()
        )
        .fetch_optional(pool)
        .await?;
        let Some(lease) = taken else { continue };
        if remove(
            pool,
            storage,
            upload.id,
            lease,
            upload.multipart_id.as_deref(),
            Removal::Expired,
        )
        .await?
        {
            removed += 1;
        }
    }
    let stored = storage.resumable_leftovers().await?;
    if !stored.is_empty() {
        let kept = sqlx::query_scalar!(
            "SELECT id FROM resumable_uploads WHERE id = ANY($1)",
            &stored
        )
        .fetch_all(pool)
        .await?;
        for id in stored.into_iter().filter(|id| !kept.contains(id)) {
            storage.discard_resumable(id, None).await?;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed expired resumable uploads");
    }
    Ok(removed)
}

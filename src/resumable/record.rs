//! The `resumable_uploads` table: an upload's whole state, and the lease that lets one request
//! at a time change it.

use sha2::{Sha256, digest::common::hazmat::SerializableState};
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    base::{error::ApiError, liveness},
    storage::partial::{Multipart, Partial},
};

/// A new upload's row.
pub struct NewUpload {
    pub id: Uuid,
    pub owner: i64,
    pub length: Option<u64>,
    pub metadata: Option<String>,
    pub filename: String,
    pub declared_type: Option<String>,
    pub multipart_id: Option<String>,
    pub expires_at: OffsetDateTime,
    /// A piece of a file, for a final upload to concatenate (tus concatenation).
    pub partial: bool,
    /// Whole once its bytes reach its length (tus); else once the client says so (IETF).
    pub ends_at_length: bool,
    /// The upload link it comes through, if it does.
    pub upload_link: Option<Uuid>,
    /// Seconds its file is to live from its commit (`expires_in`); `None`: until deleted.
    pub lifetime: Option<i64>,
    /// What the upload hook attached, for its file.
    pub file_metadata: Option<serde_json::Value>,
}

/// What HEAD shows of an upload.
pub struct Status {
    pub length: Option<i64>,
    pub received: i64,
    pub metadata: Option<String>,
    pub expires_at: OffsetDateTime,
    pub expired: bool,
    pub partial: bool,
    pub ends_at_length: bool,
}

/// An upload whose lease this request holds: it alone may change the upload until it gives
/// the lease back.
#[derive(Debug)]
pub struct Leased {
    pub id: Uuid,
    pub owner: i64,
    pub lease: Uuid,
    pub length: Option<i64>,
    pub received: i64,
    pub filename: String,
    pub declared_type: Option<String>,
    pub content_type: Option<String>,
    pub hash_state: Vec<u8>,
    pub multipart_id: Option<String>,
    pub parts: Vec<String>,
    pub tail: Vec<u8>,
    pub part_size: Option<i64>,
    /// What the upload holds of its owner's quota.
    pub reserved: i64,
    pub partial: bool,
    pub ends_at_length: bool,
    /// The upload link it came through: its file is counted on the link when committed.
    pub upload_link: Option<Uuid>,
    /// Seconds its file is to live from its commit; `None`: until deleted.
    pub lifetime: Option<i64>,
    /// What the upload hook attached, for its file.
    pub file_metadata: Option<serde_json::Value>,
}

#[tracing::instrument(name = "db.create_upload", skip_all, fields(upload_id = %upload.id))]
pub async fn create(conn: &mut PgConnection, upload: &NewUpload) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO resumable_uploads
            (id, owner_id, length, metadata, filename, declared_type, hash_state, multipart_id,
             expires_at, partial, ends_at_length, upload_link_id, lifetime_secs, file_metadata)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        "#,
        upload.id,
        upload.owner,
        upload.length.map(|length| length as i64),
        upload.metadata,
        upload.filename,
        upload.declared_type,
        &hash_state(&Sha256::default()),
        upload.multipart_id,
        upload.expires_at,
        upload.partial,
        upload.ends_at_length,
        upload.upload_link,
        upload.lifetime,
        upload.file_metadata,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many unfinished uploads (not expired) an owner holds, and when the first of them expires.
pub struct Unfinished {
    pub count: i64,
    pub earliest_expiry: OffsetDateTime,
}

/// Takes a lock, held until `tx` ends, that every other creation of `owner`'s waits for: what
/// `unfinished` counts inside `tx` stays true until this creation is recorded.
#[tracing::instrument(name = "db.lock_creations", skip_all, fields(owner))]
pub async fn lock_creations(tx: &mut PgConnection, owner: i64) -> Result<(), sqlx::Error> {
    // Advisory locks of two keys: a space of their own, apart from the instances' (one key).
    // Owners whose ids agree modulo 2^31 share a lock, which only makes them wait.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, ($2::int8 % 2147483647)::int4)",
        UNFINISHED_LOCKS,
        owner
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Counts `owner`'s unfinished uploads (see `lock_creations` for a count that stays true).
#[tracing::instrument(name = "db.count_unfinished_uploads", skip_all, fields(owner))]
pub async fn unfinished(conn: &mut PgConnection, owner: i64) -> Result<Unfinished, sqlx::Error> {
    sqlx::query_as!(
        Unfinished,
        r#"
        SELECT count(*) AS "count!", coalesce(min(expires_at), now()) AS "earliest_expiry!"
        FROM resumable_uploads WHERE owner_id = $1 AND expires_at > now()
        "#,
        owner
    )
    .fetch_one(conn)
    .await
}

/// The first key of the advisory locks that serialise one owner's creations.
const UNFINISHED_LOCKS: i32 = 0x7475_7301;

#[tracing::instrument(name = "db.upload_status", skip_all, fields(upload_id = %id))]
pub async fn status(pool: &PgPool, id: Uuid, owner: i64) -> Result<Option<Status>, sqlx::Error> {
    sqlx::query_as!(
        Status,
        r#"
        SELECT length, received, metadata, expires_at, expires_at <= now() AS "expired!", partial,
            ends_at_length
        FROM resumable_uploads WHERE id = $1 AND owner_id = $2
        "#,
        id,
        owner
    )
    .fetch_optional(pool)
    .await
}

/// Why a lease was not given.
pub enum Refused {
    NotFound,
    Expired,
    /// Held by a running instance (this one, possibly), when it is known which.
    Locked(Option<Uuid>),
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::NotFound => ApiError::NotFound("upload"),
            Refused::Expired => ApiError::UploadExpired,
            Refused::Locked(_) => ApiError::UploadLocked,
        }
    }
}

/// Takes `owner`'s upload `id` for this request. A lease held by an instance that is gone is
/// taken over; one held by a running instance (this one included) refuses.
#[tracing::instrument(name = "db.take_lease", skip_all, fields(upload_id = %id))]
pub async fn take_lease(
    pool: &PgPool,
    id: Uuid,
    owner: i64,
    instance: Uuid,
) -> Result<Result<Leased, Refused>, sqlx::Error> {
    let lease = Uuid::new_v4();
    if let Some(leased) = lease_if_held_by(pool, id, owner, lease, instance, None).await? {
        return Ok(Ok(leased));
    }
    let current = sqlx::query!(
        r#"
        SELECT lease, lease_holder, expires_at <= now() AS "expired!"
        FROM resumable_uploads WHERE id = $1 AND owner_id = $2
        "#,
        id,
        owner
    )
    .fetch_optional(pool)
    .await?;
    let Some(current) = current else {
        return Ok(Err(Refused::NotFound));
    };
    if current.expired {
        return Ok(Err(Refused::Expired));
    }
    let (Some(held), Some(holder)) = (current.lease, current.lease_holder) else {
        // Given back between the two statements: try once more.
        return Ok(lease_if_held_by(pool, id, owner, lease, instance, None)
            .await?
            .ok_or(Refused::Locked(None)));
    };
    if holder == instance || !liveness::running(pool, &[holder]).await?.is_empty() {
        return Ok(Err(Refused::Locked(Some(holder))));
    }
    tracing::info!(%id, %holder, "taking over the lease of an upload whose instance is gone");
    Ok(
        lease_if_held_by(pool, id, owner, lease, instance, Some(held))
            .await?
            .ok_or(Refused::Locked(None)),
    )
}

/// Takes the lease if it is `held` (`None`: free) and the upload has not expired.
async fn lease_if_held_by(
    pool: &PgPool,
    id: Uuid,
    owner: i64,
    lease: Uuid,
    instance: Uuid,
    held: Option<Uuid>,
) -> Result<Option<Leased>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let leased = sqlx::query_as!(
        Leased,
        r#"
        UPDATE resumable_uploads SET lease = $3, lease_holder = $4
        WHERE id = $1 AND owner_id = $2 AND lease IS NOT DISTINCT FROM $5 AND expires_at > now()
        RETURNING id, owner_id AS owner, lease AS "lease!", length, received, filename,
            declared_type, content_type, hash_state, multipart_id, parts, tail, part_size,
            coalesce((SELECT bytes FROM quota_reservations WHERE upload_id = $1), 0) AS "reserved!",
            partial, ends_at_length, upload_link_id AS upload_link, lifetime_secs AS lifetime,
            file_metadata
        "#,
        id,
        owner,
        lease,
        instance,
        held
    )
    .fetch_optional(&mut *conn)
    .await;
    // The tail (megabytes, on S3) grew this connection's buffers: give them back, or every
    // pooled connection would keep a part's worth of memory.
    conn.shrink_buffers();
    leased
}

/// What a PATCH changed, to be recorded.
pub struct Progress<'a> {
    pub partial: &'a Partial,
    pub length: Option<i64>,
    pub content_type: Option<&'a str>,
    pub ends_at_length: bool,
    pub expires_at: OffsetDateTime,
}

/// Records a PATCH's progress; `release` gives the lease back in the same statement. `false`
/// when the lease was lost (nothing recorded).
#[tracing::instrument(name = "db.save_progress", skip_all, fields(upload_id = %upload.id, release))]
pub async fn save(
    pool: &PgPool,
    upload: &Leased,
    progress: &Progress<'_>,
    release: bool,
) -> Result<bool, sqlx::Error> {
    let multipart = progress.partial.multipart.as_ref();
    let parts = multipart.map(|m| m.parts.clone()).unwrap_or_default();
    let tail = multipart.map(|m| m.tail.to_vec()).unwrap_or_default();
    let part_size = multipart.and_then(|m| m.part_size).map(|size| size as i64);
    let mut conn = pool.acquire().await?;
    let saved = sqlx::query!(
        r#"
        UPDATE resumable_uploads SET received = $3, hash_state = $4, parts = $5, tail = $6,
            length = $7, content_type = $8, expires_at = $9, ends_at_length = $11,
            part_size = $12,
            lease = CASE WHEN $10 THEN NULL ELSE lease END,
            lease_holder = CASE WHEN $10 THEN NULL ELSE lease_holder END
        WHERE id = $1 AND lease = $2
        "#,
        upload.id,
        upload.lease,
        progress.partial.size as i64,
        &hash_state(&progress.partial.hasher),
        &parts,
        &tail,
        progress.length,
        progress.content_type,
        progress.expires_at,
        release,
        progress.ends_at_length,
        part_size,
    )
    .execute(&mut *conn)
    .await;
    conn.shrink_buffers();
    Ok(saved?.rows_affected() == 1)
}

/// Gives the lease back without recording anything, and what the request reserved of the
/// owner's quota beyond `kept` (what the upload held when the lease was taken) and the bytes
/// recorded: a refused or cut PATCH holds no more than before, save what it checkpointed.
#[tracing::instrument(name = "db.release_lease", skip_all, fields(upload_id = %id))]
pub async fn release(pool: &PgPool, id: Uuid, lease: Uuid, kept: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH released AS (
            UPDATE resumable_uploads SET lease = NULL, lease_holder = NULL
            WHERE id = $1 AND lease = $2
            RETURNING id, greatest($3, received) AS kept
        ), beyond AS (
            SELECT reservation.upload_id, reservation.user_id, released.kept,
                reservation.bytes - released.kept AS freed
            FROM quota_reservations AS reservation JOIN released ON upload_id = released.id
            WHERE reservation.bytes > released.kept
        ), emptied AS (
            DELETE FROM quota_reservations AS reservation USING beyond
            WHERE reservation.upload_id = beyond.upload_id AND beyond.kept = 0
        ), shrunk AS (
            UPDATE quota_reservations AS reservation SET bytes = beyond.kept
            FROM beyond WHERE reservation.upload_id = beyond.upload_id AND beyond.kept > 0
        )
        UPDATE users SET reserved_bytes = reserved_bytes - beyond.freed
        FROM beyond WHERE users.id = beyond.user_id
        "#,
        id,
        lease,
        kept
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Writes the `upload.expired` event of upload `id` (while `lease` holds it), in the
/// transaction that removes it; nothing while no event sink is live.
#[tracing::instrument(name = "db.announce_upload_expiry", skip_all, fields(upload_id = %id))]
pub async fn announce_expiry(
    conn: &mut PgConnection,
    id: Uuid,
    lease: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO events (type, subject, payload)
        SELECT 'upload.expired', u.id, jsonb_build_object('upload', jsonb_build_object(
                   'id', u.id,
                   'owner', u.owner_id,
                   'filename', u.filename,
                   'length', u.length,
                   'received', u.received,
                   'partial', u.partial,
                   'created_at', rfc3339(u.created_at),
                   'expires_at', rfc3339(u.expires_at)))
        FROM resumable_uploads u
        WHERE u.id = $1 AND u.lease = $2 AND EXISTS (SELECT FROM live_event_sinks)
        "#,
        id,
        lease
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the upload's row, inside the transaction that makes it a file or removes it. `false`
/// when the lease was lost.
#[tracing::instrument(name = "db.delete_upload", skip_all, fields(upload_id = %id))]
pub async fn delete(conn: &mut PgConnection, id: Uuid, lease: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM resumable_uploads WHERE id = $1 AND lease = $2",
        id,
        lease
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

impl Leased {
    /// Where the upload's bytes stand, for the storage to continue.
    pub fn partial(&self) -> Result<Partial, ApiError> {
        let hasher = hasher(&self.hash_state)
            .ok_or_else(|| ApiError::internal("an upload's hash state cannot be read"))?;
        Ok(Partial {
            size: self.received as u64,
            hasher,
            multipart: self.multipart_id.clone().map(|upload_id| Multipart {
                upload_id,
                parts: self.parts.clone(),
                tail: self.tail.clone().into(),
                part_size: self.part_size.map(|size| size as u64),
            }),
        })
    }
}

fn hash_state(hasher: &Sha256) -> Vec<u8> {
    hasher.serialize().to_vec()
}

fn hasher(state: &[u8]) -> Option<Sha256> {
    let state = state.try_into().ok()?;
    Sha256::deserialize(state).ok()
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    /// A resume on another instance continues the SHA-256 from the recorded state.
    #[test]
    fn a_hash_state_round_trips_mid_stream() {
        let mut first = Sha256::new();
        first.update(b"hello, ");
        let mut resumed = hasher(&hash_state(&first)).unwrap();
        resumed.update(b"world");
        assert_eq!(resumed.finalize(), Sha256::digest(b"hello, world"));
        assert!(hasher(b"short").is_none());
    }
}

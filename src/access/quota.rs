//! Storage quotas: an upload reserves bytes before it writes them, and its commit turns the
//! reservation into a usage change, applied to the user's `used_bytes` within a second. Reserving
//! is one conditional UPDATE on the user's row, so concurrent uploads of one user cannot
//! together go over the quota. An upload reserves what it announced (its Content-Length) or,
//! without one, exactly the bytes it has received, batch by batch: it never holds more than it
//! needs, so that uploads that fit together are never refused for one another's reserve.

use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::base::error::ApiError;

const RELEASE_ATTEMPTS: u32 = 60;
const RELEASE_RETRY: Duration = Duration::from_secs(10);

/// The bytes each user may keep stored (`auth.default_quota_bytes`; `None`: no limit), and the
/// pool its bookkeeping goes through (see `db::bookkeeping_pool`).
#[derive(Debug, Clone)]
pub struct Quota {
    pool: PgPool,
    limit: Option<u64>,
}

impl Quota {
    pub fn new(pool: PgPool, limit: Option<u64>) -> Self {
        Self { pool, limit }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// The bookkeeping pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// One request's claim on its user's quota. Dropped unsettled, it gives its bytes back.
pub struct Reservation {
    pool: PgPool,
    id: Uuid,
    user_id: i64,
    /// `None`: a resumable upload's, which outlives the request and is never given back on
    /// drop (see `resume`).
    instance: Option<Uuid>,
    quota: Option<u64>,
    received: u64,
    reserved: u64,
    settled: bool,
}

impl Reservation {
    /// `expected`: what the request announced (its Content-Length). Reserving it all at once
    /// costs one round trip for the whole upload; when it does not fit, the upload reserves as
    /// its bytes arrive and stops at the quota.
    #[tracing::instrument(name = "db.begin_reservation", skip_all, fields(user_id, expected))]
    pub async fn begin(
        quota: &Quota,
        user_id: i64,
        instance: Uuid,
        expected: Option<u64>,
    ) -> Result<Self, ApiError> {
        let mut reservation = Self {
            pool: quota.pool.clone(),
            id: Uuid::now_v7(),
            user_id,
            instance: Some(instance),
            quota: quota.limit,
            received: 0,
            reserved: 0,
            settled: false,
        };
        if let (Some(quota), Some(expected @ 1..)) = (quota.limit, expected) {
            reservation.try_reserve(expected, quota).await?;
        }
        Ok(reservation)
    }

    /// Continues the reservation of resumable upload `id`, which holds `reserved` bytes and has
    /// received `received`. It lasts as long as the upload: only the commit that makes the
    /// upload a file, or `release`, gives it back.
    pub fn resume(quota: &Quota, id: Uuid, user_id: i64, reserved: u64, received: u64) -> Self {
        Self {
            pool: quota.pool.clone(),
            id,
            user_id,
            instance: None,
            quota: quota.limit,
            received,
            reserved,
            settled: false,
        }
    }

    /// Holds at least `total` bytes in all (a resumable upload's declared length at once);
    /// beyond the quota → `quota_exceeded`.
    pub async fn reserve_total(&mut self, total: u64) -> Result<(), ApiError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        if total <= self.reserved {
            return Ok(());
        }
        let needed = total - self.reserved;
        if self.try_reserve(needed, quota).await? {
            return Ok(());
        }
        // Uploads committed in the last second still hold their reservations until their usage
        // is applied: apply this user's now, then decide.
        apply_changes(&self.pool, Some(self.user_id)).await?;
        if self.try_reserve(needed, quota).await? {
            return Ok(());
        }
        Err(ApiError::QuotaExceeded(quota))
    }

    /// The id the commit settles by.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Counts `bytes` more of file data; beyond the quota → `quota_exceeded`.
    pub async fn add(&mut self, bytes: u64) -> Result<(), ApiError> {
        self.received += bytes;
        self.reserve_total(self.received).await
    }

    #[tracing::instrument(name = "db.reserve_quota", skip_all, fields(reservation = %self.id, bytes))]
    async fn try_reserve(&mut self, bytes: u64, quota: u64) -> Result<bool, ApiError> {
        let reserved = sqlx::query_scalar!(
            r#"
            WITH claimed AS (
                UPDATE users SET reserved_bytes = reserved_bytes + $3
                WHERE id = $2 AND used_bytes + reserved_bytes + $3 <= $4
                RETURNING id
            )
            INSERT INTO quota_reservations (upload_id, user_id, instance, bytes)
            SELECT $1, id, $5, $3 FROM claimed
            ON CONFLICT (upload_id)
            DO UPDATE SET bytes = quota_reservations.bytes + excluded.bytes
            RETURNING bytes
            "#,
            self.id,
            self.user_id,
            bytes as i64,
            quota as i64,
            self.instance,
        )
        .fetch_optional(&self.pool)
        .await?;
        if reserved.is_some() {
            self.reserved += bytes;
        }
        Ok(reserved.is_some())
    }

    /// The commit that settled this reservation succeeded: nothing to give back.
    pub fn committed(mut self) {
        self.settled = true;
    }

    /// Gives the bytes back before answering, so that a retry right after a refusal sees them.
    /// If the database cannot be reached, dropping retries in the background.
    pub async fn release(mut self) {
        if self.reserved > 0 && release(&self.pool, self.id).await.is_ok() {
            self.settled = true;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled || self.reserved == 0 || self.instance.is_none() {
            return;
        }
        let (pool, id) = (self.pool.clone(), self.id);
        // Idempotent: after a commit whose outcome was unknown the row may be settled already.
        // Retried for a while (the database may be down); a restart's sweep does the rest.
        tokio::spawn(async move {
            for _ in 0..RELEASE_ATTEMPTS {
                match release(&pool, id).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%id, %error, "could not release a quota reservation");
                        tokio::time::sleep(RELEASE_RETRY).await;
                    }
                }
            }
        });
    }
}

/// Gives back what reservation `id` holds.
#[tracing::instrument(name = "db.release_reservation", skip_all, fields(reservation = %id))]
pub async fn release(conn: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH released AS (
            DELETE FROM quota_reservations WHERE upload_id = $1 RETURNING user_id, bytes
        )
        UPDATE users SET reserved_bytes = reserved_bytes - released.bytes
        FROM released WHERE users.id = released.user_id
        "#,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves what reservations `from` hold into one reservation `into` of `instance`, in `tx`: the
/// partial uploads a final upload concatenates hand their bytes to the file they become, so that
/// the owner's quota counts them once, before and after. The owner's reserved bytes do not
/// change.
#[tracing::instrument(name = "db.merge_reservations", skip_all, fields(reservation = %into))]
pub async fn merge(
    tx: &mut sqlx::PgConnection,
    from: &[Uuid],
    into: Uuid,
    instance: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH merged AS (
            DELETE FROM quota_reservations WHERE upload_id = ANY($1) RETURNING user_id, bytes
        )
        INSERT INTO quota_reservations (upload_id, user_id, instance, bytes)
        SELECT $2, user_id, $3, sum(bytes) FROM merged GROUP BY user_id
        "#,
        from,
        into,
        instance
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Applies pending usage changes to the users' rows: one user's (`Some`, after a delete, so
/// that the freed bytes count for the next upload) or everyone's (`None`, `spawn_applying`).
#[tracing::instrument(name = "db.apply_usage", skip_all)]
pub async fn apply_changes(pool: &PgPool, user_id: Option<i64>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH changes AS (
            DELETE FROM usage_changes WHERE $1::bigint IS NULL OR user_id = $1
            RETURNING user_id, used_delta, released
        ), per_user AS (
            SELECT user_id, sum(used_delta) AS used, sum(released) AS released
            FROM changes GROUP BY user_id
        )
        UPDATE users SET
            used_bytes = used_bytes + per_user.used,
            reserved_bytes = reserved_bytes - per_user.released
        FROM per_user
        WHERE users.id = per_user.user_id AND (per_user.used <> 0 OR per_user.released <> 0)
        "#,
        user_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Applies every user's pending usage changes, every `interval`. Uploads leave theirs to this
/// (on the safe side: until then their reservation still counts) rather than each locking the
/// user's row after its commit, which would make one user's uploads queue behind each other.
pub fn spawn_applying(pool: PgPool, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            if let Err(error) = apply_changes(&pool, None).await {
                tracing::warn!(%error, "could not apply usage changes; will retry");
            }
        }
    })
}

/// Gives back what instances no longer running held: those not in `alive`, and only
/// reservations made before `listed_at`, when the live instances were listed (an instance
/// started since then is not in the list but is alive).
#[tracing::instrument(name = "db.release_dead_reservations", skip_all)]
pub async fn release_dead(
    pool: &PgPool,
    alive: &[Uuid],
    listed_at: time::OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let released = sqlx::query!(
        r#"
        WITH released AS (
            DELETE FROM quota_reservations
            WHERE instance <> ALL($1) AND created_at < $2
            RETURNING user_id, bytes
        ), per_user AS (
            SELECT user_id, sum(bytes) AS bytes FROM released GROUP BY user_id
        )
        UPDATE users SET reserved_bytes = reserved_bytes - per_user.bytes
        FROM per_user WHERE users.id = per_user.user_id
        "#,
        alive,
        listed_at
    )
    .execute(pool)
    .await?;
    Ok(released.rows_affected())
}

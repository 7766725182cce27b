//! The outbox's tables (migrations/20261208000001_events.sql): events are written by the
//! statements that change files; here they are claimed for a sink, settled by the outcome of
//! their delivery, pruned, counted, listed and retried.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// One event claimed for one sink: no other instance attempts it until `lease` is over.
#[derive(Debug)]
pub struct Claimed {
    pub event_id: Uuid,
    /// The attempt this is; settling names it, so that an attempt whose lease ran out (and
    /// was taken over) settles nothing.
    pub attempt: i32,
    pub kind: String,
    /// The JSON body every sink gets: `{"id", "type", "timestamp", "data"}`.
    pub body: String,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Tried again after `retry` (unless it was the last attempt): why it failed.
    Failed {
        error: String,
        retry: Duration,
    },
}

/// Says that this instance has `sinks` (name and the event types it takes; empty: all), so
/// that events are queued for them.
pub async fn register(pool: &PgPool, sinks: &[(String, Vec<String>)]) -> Result<(), sqlx::Error> {
    for (name, types) in sinks {
        sqlx::query!(
            r#"
            INSERT INTO event_sinks (name, types) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET types = EXCLUDED.types, seen_at = now()
            "#,
            name,
            types
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Claims up to `limit` deliveries of `sink` that are due, oldest first, leaving out any whose
/// file has an earlier event not yet delivered there (per-file order), and the ones another
/// instance holds.
#[tracing::instrument(name = "db.claim_events", skip_all, fields(sink))]
pub async fn claim(
    pool: &PgPool,
    sink: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as!(
        Claimed,
        r#"
        WITH due AS (
            SELECT d.event_id FROM event_deliveries d
            WHERE d.sink = $1 AND d.state = 'pending' AND d.next_attempt_at <= now()
              AND NOT EXISTS (
                  SELECT FROM event_deliveries earlier
                  WHERE earlier.sink = d.sink AND earlier.subject = d.subject
                    AND earlier.seq < d.seq AND earlier.state <> 'delivered')
            ORDER BY d.seq
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE event_deliveries d
        SET attempts = d.attempts + 1, next_attempt_at = now() + $3 * interval '1 millisecond'
        FROM due JOIN events e ON e.id = due.event_id
        WHERE d.sink = $1 AND d.event_id = due.event_id
        RETURNING d.event_id, d.attempts AS attempt, e.type AS kind,
                  jsonb_build_object(
                      'id', e.id,
                      'type', e.type,
                      'timestamp', rfc3339(e.occurred_at),
                      'data', e.payload)::text AS "body!"
        "#,
        sink,
        limit,
        lease.as_millis() as f64,
    )
    .fetch_all(pool)
    .await
}

/// Records how the attempts went: delivered, due again later, or (after `max_attempts`)
/// failed, with every later event of the same file for this sink, which may not overtake it.
#[tracing::instrument(name = "db.settle_events", skip_all, fields(sink, events = outcomes.len()))]
pub async fn settle(
    pool: &PgPool,
    sink: &str,
    outcomes: &[(&Claimed, Attempt)],
    max_attempts: i32,
) -> Result<u64, sqlx::Error> {
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut attempts = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::with_capacity(outcomes.len());
    let mut retries = Vec::with_capacity(outcomes.len());
    for (claimed, attempt) in outcomes {
        ids.push(claimed.event_id);
        attempts.push(claimed.attempt);
        let (error, retry) = match attempt {
            Attempt::Delivered => (None, 0.0),
            Attempt::Failed { error, retry } => (Some(error.as_str()), retry.as_millis() as f64),
        };
        errors.push(error);
        retries.push(retry);
    }
    let failed = sqlx::query_scalar!(
        r#"
        WITH settled AS (
            UPDATE event_deliveries d SET
                state = CASE WHEN o.error IS NULL THEN 'delivered'
                             WHEN d.attempts >= $6 THEN 'failed'
                             ELSE 'pending' END,
                delivered_at = CASE WHEN o.error IS NULL THEN now() END,
                last_error = o.error,
                next_attempt_at = now() + o.retry_ms * interval '1 millisecond'
            FROM UNNEST($2::uuid[], $3::int4[], $4::text[], $5::float8[])
                AS o (event_id, attempts, error, retry_ms)
            WHERE d.sink = $1 AND d.event_id = o.event_id AND d.attempts = o.attempts
            RETURNING d.subject, d.seq, d.state
        ), held_back AS (
            UPDATE event_deliveries d
            SET state = 'failed', last_error = 'an earlier event of the same file failed'
            FROM settled s
            WHERE s.state = 'failed' AND d.sink = $1 AND d.subject = s.subject
              AND d.seq > s.seq AND d.state = 'pending'
        )
        SELECT count(*) AS "failed!" FROM settled WHERE state = 'failed'
        "#,
        sink,
        &ids,
        &attempts,
        &errors as &[Option<&str>],
        &retries,
        max_attempts,
    )
    .fetch_one(pool)
    .await?;
    Ok(failed as u64)
}

/// Disables `sink` for every instance (its endpoint said 410 Gone): what was pending for it
/// fails, and no new event is queued for it until `retry` takes it back.
#[tracing::instrument(name = "db.disable_sink", skip_all, fields(sink))]
pub async fn disable(pool: &PgPool, sink: &str, because: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH disabled AS (
            UPDATE event_sinks SET disabled_at = now(), disabled_because = $2
            WHERE name = $1 AND disabled_at IS NULL
        )
        UPDATE event_deliveries SET state = 'failed', last_error = $2
        WHERE sink = $1 AND state = 'pending'
        "#,
        sink,
        because
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Still here with `sinks`: keeps them taking new events.
pub async fn heartbeat(pool: &PgPool, sinks: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE event_sinks SET seen_at = now() WHERE name = ANY($1)",
        sinks
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes up to `PRUNE_BATCH` events older than `retention` that no live sink still waits
/// for, with their deliveries; how many.
#[tracing::instrument(name = "db.prune_events", skip_all)]
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let pruned = sqlx::query_scalar!(
        r#"
        WITH pruned AS (
            DELETE FROM events WHERE id IN (
                SELECT e.id FROM events e
                WHERE e.occurred_at < now() - $1 * interval '1 second'
                  AND NOT EXISTS (
                      SELECT FROM event_deliveries d JOIN live_event_sinks s ON s.name = d.sink
                      WHERE d.event_id = e.id AND d.state = 'pending')
                ORDER BY e.occurred_at
                LIMIT $2
            )
            RETURNING id
        ), deliveries AS (
            DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM pruned)
        )
        SELECT count(*) AS "pruned!" FROM pruned
        "#,
        retention.as_secs_f64(),
        PRUNE_BATCH,
    )
    .fetch_one(pool)
    .await?;
    Ok(pruned as u64)
}

/// The most events one prune deletes: one statement stays short, and `upkeep` prunes again at
/// once while a prune takes this many.
pub const PRUNE_BATCH: i64 = 10_000;

/// A sink's backlog, for the metrics.
#[derive(Debug)]
pub struct Backlog {
    pub sink: String,
    pub pending: i64,
    pub failed: i64,
    /// Seconds since the oldest pending event happened.
    pub oldest_pending: Option<f64>,
    pub disabled: bool,
}

pub async fn backlog(pool: &PgPool, sinks: &[String]) -> Result<Vec<Backlog>, sqlx::Error> {
    sqlx::query_as!(
        Backlog,
        r#"
        SELECT s.name AS sink,
               (SELECT count(*) FROM event_deliveries d
                WHERE d.sink = s.name AND d.state = 'pending') AS "pending!",
               (SELECT count(*) FROM event_deliveries d
                WHERE d.sink = s.name AND d.state = 'failed') AS "failed!",
               (SELECT extract(epoch FROM now() - e.occurred_at)::float8
                FROM event_deliveries d JOIN events e ON e.id = d.event_id
                WHERE d.sink = s.name AND d.state = 'pending'
                ORDER BY d.seq LIMIT 1) AS oldest_pending,
               s.disabled_at IS NOT NULL AS "disabled!"
        FROM event_sinks s WHERE s.name = ANY($1)
        "#,
        sinks
    )
    .fetch_all(pool)
    .await
}

/// A delivery not made (yet), for `intake events list`.
#[derive(Debug)]
pub struct Undelivered {
    pub event_id: Uuid,
    pub kind: String,
    pub subject: Uuid,
    pub occurred_at: OffsetDateTime,
    pub sink: String,
    /// `pending` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
}

/// The deliveries not made, oldest first: the failed ones, or (`failed_only` false) the
/// pending ones too; at most `limit`.
pub async fn undelivered(
    pool: &PgPool,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<Undelivered>, sqlx::Error> {
    sqlx::query_as!(
        Undelivered,
        r#"
        SELECT e.id AS event_id, e.type AS kind, e.subject, e.occurred_at, d.sink, d.state,
               d.attempts, d.next_attempt_at, d.last_error
        FROM event_deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.state = 'failed' OR (NOT $1 AND d.state = 'pending')
        ORDER BY d.seq, d.sink
        LIMIT $2
        "#,
        failed_only,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Makes failed deliveries (of event `id`, or all of them) pending again, due at once, with
/// their attempts counted afresh; a disabled sink among them is enabled again. How many.
pub async fn retry(pool: &PgPool, id: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let retried = sqlx::query_scalar!(
        r#"
        WITH retried AS (
            UPDATE event_deliveries
            SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
            WHERE state = 'failed' AND ($1::uuid IS NULL OR event_id = $1)
            RETURNING sink
        ), enabled AS (
            UPDATE event_sinks SET disabled_at = NULL, disabled_because = NULL, seen_at = now()
            WHERE name IN (SELECT sink FROM retried) AND disabled_at IS NOT NULL
        )
        SELECT count(*) AS "retried!" FROM retried
        "#,
        id
    )
    .fetch_one(pool)
    .await?;
    Ok(retried as u64)
}

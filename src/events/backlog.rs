//! What has not been delivered, as the metrics and `intake events` show it: the events past a
//! sink's cursor (waiting for it, or, while it is disabled, failed), and the queued deliveries
//! (waiting for a retry, or failed for good); and `retry`, which sends failed ones again.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

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
        WITH sinks AS (
            SELECT s.name, s.disabled_at IS NOT NULL AS disabled, past.count, past.oldest
            FROM event_sinks s
            CROSS JOIN LATERAL (
                SELECT count(*) AS count, min(e.occurred_at) AS oldest FROM events e
                WHERE (e.xid, e.seq) > (s.cursor_xid, s.cursor_seq)
                  AND (cardinality(s.types) = 0 OR e.type = ANY (s.types))
            ) past
            WHERE s.name = ANY ($1)
        )
        SELECT s.name AS sink,
               (SELECT count(*) FROM event_deliveries d
                WHERE d.sink = s.name AND d.state = 'pending')
               + CASE WHEN s.disabled THEN 0 ELSE s.count END AS "pending!",
               (SELECT count(*) FROM event_deliveries d
                WHERE d.sink = s.name AND d.state = 'failed')
               + CASE WHEN s.disabled THEN s.count ELSE 0 END AS "failed!",
               extract(epoch FROM now() - LEAST(
                   (SELECT min(e.occurred_at)
                    FROM event_deliveries d JOIN events e ON e.id = d.event_id
                    WHERE d.sink = s.name AND d.state = 'pending'),
                   CASE WHEN NOT s.disabled THEN s.oldest END))::float8 AS oldest_pending,
               s.disabled AS "disabled!"
        FROM sinks s
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

/// The deliveries not made, oldest first: the failed ones (with what a disabled sink has not
/// had), or (`failed_only` false) the pending ones too; at most `limit`.
pub async fn undelivered(
    pool: &PgPool,
    failed_only: bool,
    limit: i64,
) -> Result<Vec<Undelivered>, sqlx::Error> {
    sqlx::query_as!(
        Undelivered,
        r#"
        SELECT event_id AS "event_id!", kind AS "kind!", subject AS "subject!",
               occurred_at AS "occurred_at!", sink AS "sink!", state AS "state!",
               attempts AS "attempts!", next_attempt_at AS "next_attempt_at!", last_error
        FROM (
            (SELECT e.id AS event_id, e.type AS kind, e.subject, e.occurred_at, d.sink, d.state,
                    d.attempts, d.next_attempt_at, d.last_error, e.seq
             FROM event_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'failed' OR (NOT $1 AND d.state = 'pending')
             ORDER BY e.seq LIMIT $2)
            UNION ALL
            (SELECT e.id, e.type, e.subject, e.occurred_at, s.name,
                    CASE WHEN s.disabled_at IS NULL THEN 'pending' ELSE 'failed' END,
                    0, now(), s.disabled_because, e.seq
             FROM event_sinks s
             JOIN events e ON (e.xid, e.seq) > (s.cursor_xid, s.cursor_seq)
                          AND (cardinality(s.types) = 0 OR e.type = ANY (s.types))
             WHERE s.disabled_at IS NOT NULL OR NOT $1
             ORDER BY e.xid, e.seq LIMIT $2)
        ) undelivered
        ORDER BY seq, sink
        LIMIT $2
        "#,
        failed_only,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Makes failed deliveries (of event `id`, or all of them) pending again, due at once, with
/// their attempts counted afresh, and enables the disabled sinks among them (all of them, for
/// all), which go on from their cursor. How many deliveries are due again.
pub async fn retry(pool: &PgPool, id: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let retried = sqlx::query_scalar!(
        r#"
        WITH retried AS (
            UPDATE event_deliveries
            SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
            WHERE state = 'failed' AND ($1::uuid IS NULL OR event_id = $1)
            RETURNING sink
        ), waiting AS (
            SELECT s.name AS sink FROM event_sinks s
            JOIN events e ON (e.xid, e.seq) > (s.cursor_xid, s.cursor_seq)
                         AND (cardinality(s.types) = 0 OR e.type = ANY (s.types))
            WHERE s.disabled_at IS NOT NULL AND ($1::uuid IS NULL OR e.id = $1)
        ), enabled AS (
            UPDATE event_sinks SET disabled_at = NULL, disabled_because = NULL, seen_at = now()
            WHERE disabled_at IS NOT NULL
              AND ($1::uuid IS NULL
                   OR name IN (SELECT sink FROM retried UNION SELECT sink FROM waiting))
        )
        SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM waiting) AS "retried!"
        "#,
        id
    )
    .fetch_one(pool)
    .await?;
    Ok(retried as u64)
}

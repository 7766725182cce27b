//! The outbox's tables (migrations/20261208000001_events.sql, 20261209000001_event_cursors.sql):
//! events are written by the statements that change files; here each sink reads them in order
//! past its cursor (`read`, `advance`), and the few that need it (an attempt failed, or an
//! earlier event of the same file is still waiting) are queued as delivery rows, claimed when
//! due and settled by the outcome (`claim`, `settle`); old events are pruned.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// One event to attempt for one sink: no other instance attempts it until the lease is over.
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
/// that events are written for them. A new sink, or one no instance had for an hour, starts
/// at the newest events.
pub async fn register(pool: &PgPool, sinks: &[(String, Vec<String>)]) -> Result<(), sqlx::Error> {
    for (name, types) in sinks {
        sqlx::query!(
            r#"
            INSERT INTO event_sinks AS s (name, types) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET
                types = EXCLUDED.types,
                seen_at = now(),
                cursor_xid = CASE WHEN s.seen_at < now() - interval '1 hour'
                                  THEN EXCLUDED.cursor_xid ELSE s.cursor_xid END,
                cursor_seq = CASE WHEN s.seen_at < now() - interval '1 hour'
                                  THEN 0 ELSE s.cursor_seq END
            "#,
            name,
            types
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// An event read past a sink's cursor.
#[derive(Debug)]
pub struct Fresh {
    pub event: Claimed,
    /// Where the cursor goes once this event is dealt with.
    pub xid: i64,
    pub seq: i64,
    /// Not to be attempted now: an earlier event of its file waits in the delivery rows (or in
    /// this read), and it is queued behind it.
    pub held: bool,
}

/// The next events past `sink`'s cursor (at most `limit`, of the types it takes), when
/// `holder` has the sink's lease or can take it (it then holds it for `lease`); none when
/// another instance reads for the sink, or it is disabled. Only events of transactions older
/// than any still running are read: no event can appear behind the cursor afterwards.
#[tracing::instrument(name = "db.read_events", skip_all, fields(sink))]
pub async fn read(
    pool: &PgPool,
    sink: &str,
    holder: Uuid,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Fresh>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        WITH s AS (
            UPDATE event_sinks
            SET holder = $2, held_until = now() + $4 * interval '1 millisecond'
            WHERE name = $1 AND disabled_at IS NULL
              AND (holder = $2 OR holder IS NULL OR held_until < now())
            RETURNING cursor_xid, cursor_seq, types
        ), next AS (
            SELECT e.* FROM s, events e
            WHERE (e.xid, e.seq) > (s.cursor_xid, s.cursor_seq)
              AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
              AND (cardinality(s.types) = 0 OR e.type = ANY (s.types))
            ORDER BY e.xid, e.seq
            LIMIT $3
        )
        SELECT n.id, n.xid::text::int8 AS "xid!", n.seq, n.type AS kind,
               row_number() OVER (PARTITION BY n.subject ORDER BY n.xid, n.seq) > 1
               OR EXISTS (
                   SELECT FROM event_deliveries d
                   WHERE d.sink = $1 AND d.subject = n.subject AND d.state <> 'delivered'
               ) AS "held!",
               jsonb_build_object(
                   'id', n.id,
                   'type', n.type,
                   'timestamp', rfc3339(n.occurred_at),
                   'data', n.payload)::text AS "body!"
        FROM next n
        ORDER BY n.xid, n.seq
        "#,
        sink,
        holder,
        limit,
        lease.as_millis() as f64,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Fresh {
            event: Claimed {
                event_id: row.id,
                attempt: 1,
                kind: row.kind,
                body: row.body,
            },
            xid: row.xid,
            seq: row.seq,
            held: row.held,
        })
        .collect())
}

/// Moves `sink`'s cursor past `read` (the whole of one `read`, in its order), if `holder`
/// still has the lease, queueing the events that need a delivery row: those whose attempt
/// failed (`failures`: failed for good after `max_attempts`), and the held ones (failed at
/// once behind an event of their file that failed for good). `None`: the lease was lost, and
/// another instance reads these events again; otherwise how many failed for good.
#[tracing::instrument(name = "db.advance_events", skip_all, fields(sink, events = read.len()))]
pub async fn advance(
    pool: &PgPool,
    sink: &str,
    holder: Uuid,
    read: &[Fresh],
    failures: &[(&Claimed, Attempt)],
    max_attempts: i32,
) -> Result<Option<u64>, sqlx::Error> {
    let Some(last) = read.last() else {
        return Ok(Some(0));
    };
    let mut tx = pool.begin().await?;
    let moved = sqlx::query!(
        r#"
        UPDATE event_sinks SET cursor_xid = $3::int8::text::xid8, cursor_seq = $4
        WHERE name = $1 AND holder = $2
        "#,
        sink,
        holder,
        last.xid,
        last.seq
    )
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(None);
    }
    let (ids, attempts, errors, retries) = columns(failures);
    let mut failed = sqlx::query_scalar!(
        r#"
        WITH queued AS (
            INSERT INTO event_deliveries
                (event_id, sink, seq, subject, state, attempts, next_attempt_at, last_error)
            SELECT e.id, $1, e.seq, e.subject,
                   CASE WHEN o.attempts >= $6 THEN 'failed' ELSE 'pending' END,
                   o.attempts, now() + o.retry_ms * interval '1 millisecond', o.error
            FROM UNNEST($2::uuid[], $3::int4[], $4::text[], $5::float8[])
                AS o (event_id, attempts, error, retry_ms)
            JOIN events e ON e.id = o.event_id
            ON CONFLICT DO NOTHING
            RETURNING state
        )
        SELECT count(*) AS "failed!" FROM queued WHERE state = 'failed'
        "#,
        sink,
        &ids,
        &attempts,
        &errors as &[Option<&str>],
        &retries,
        max_attempts,
    )
    .fetch_one(&mut *tx)
    .await?;
    let held: Vec<Uuid> = read
        .iter()
        .filter(|fresh| fresh.held)
        .map(|fresh| fresh.event.event_id)
        .collect();
    if !held.is_empty() {
        failed += sqlx::query_scalar!(
            r#"
            WITH queued AS (
                INSERT INTO event_deliveries (event_id, sink, seq, subject, state, last_error)
                SELECT e.id, $1, e.seq, e.subject,
                       CASE WHEN failed.earlier THEN 'failed' ELSE 'pending' END,
                       CASE WHEN failed.earlier
                            THEN 'an earlier event of the same file failed' END
                FROM events e
                CROSS JOIN LATERAL (
                    SELECT EXISTS (
                        SELECT FROM event_deliveries d
                        WHERE d.sink = $1 AND d.subject = e.subject AND d.seq < e.seq
                          AND d.state = 'failed') AS earlier
                ) failed
                WHERE e.id = ANY ($2)
                ORDER BY e.xid, e.seq
                ON CONFLICT DO NOTHING
                RETURNING state
            )
            SELECT count(*) AS "failed!" FROM queued WHERE state = 'failed'
            "#,
            sink,
            &held,
        )
        .fetch_one(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(failed as u64))
}

type Columns<'a> = (Vec<Uuid>, Vec<i32>, Vec<Option<&'a str>>, Vec<f64>);

/// The outcomes of attempts as the columns of an `UNNEST`: event ids, attempt numbers, errors
/// (none: delivered) and the waits before the next attempt, in milliseconds.
fn columns<'a>(outcomes: &'a [(&Claimed, Attempt)]) -> Columns<'a> {
    let mut columns = (
        Vec::with_capacity(outcomes.len()),
        Vec::with_capacity(outcomes.len()),
        Vec::with_capacity(outcomes.len()),
        Vec::with_capacity(outcomes.len()),
    );
    for (claimed, attempt) in outcomes {
        columns.0.push(claimed.event_id);
        columns.1.push(claimed.attempt);
        let (error, retry) = match attempt {
            Attempt::Delivered => (None, 0.0),
            Attempt::Failed { error, retry } => (Some(error.as_str()), retry.as_millis() as f64),
        };
        columns.2.push(error);
        columns.3.push(retry);
    }
    columns
}

/// Claims up to `limit` queued deliveries of `sink` that are due, oldest first, leaving out any whose
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
    if outcomes.is_empty() {
        return Ok(0);
    }
    let (ids, attempts, errors, retries) = columns(outcomes);
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

/// Disables `sink` for every instance (its endpoint said 410 Gone): what was queued for it
/// fails, and its cursor stays where it is until `retry` takes it back.
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
/// for (queued, or past its cursor), with their deliveries; how many. What a disabled sink
/// has not had yet goes too.
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
                  AND NOT EXISTS (
                      SELECT FROM event_sinks s
                      WHERE s.seen_at > now() - interval '1 hour' AND s.disabled_at IS NULL
                        AND (e.xid, e.seq) > (s.cursor_xid, s.cursor_seq)
                        AND (cardinality(s.types) = 0 OR e.type = ANY (s.types)))
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

//! Orders and idempotency keys in Postgres.

use sqlx::PgPool;
use uuid::Uuid;

use super::{keys::KeyHeld, process::Outcome, request::Order};

/// In-progress keys older than this are taken over: their request died without an answer.
const STALE_CLAIM: &str = "5 minutes";

/// Records a new order, or nothing when a retry continues one that exists already.
#[tracing::instrument(name = "db.insert_order", skip_all, fields(order_id = %id))]
pub async fn insert(pool: &PgPool, id: Uuid, order: &Order) -> Result<(), sqlx::Error> {
    let items = serde_json::to_value(&order.items).expect("items serialize");
    sqlx::query!(
        "INSERT INTO orders (id, customer_email, amount_cents, currency, items)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
        id,
        order.customer_email,
        order.amount_cents,
        order.currency,
        items
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.complete_order", skip_all, fields(order_id = %id))]
pub async fn complete(pool: &PgPool, id: Uuid, outcome: &Outcome) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET status = $2, payment_status = $3, payment_transaction_id = $4,
             payment_elapsed_ms = $5, email_status = $6, email_elapsed_ms = $7,
             elapsed_ms = $8, completed_at = now()
         WHERE id = $1",
        id,
        outcome.order_status(),
        outcome.payment.status.as_str(),
        outcome.payment.transaction_id,
        clamp(outcome.payment.elapsed_ms),
        outcome.email.status.as_str(),
        clamp(outcome.email.elapsed_ms),
        clamp(outcome.elapsed_ms),
    )
    .execute(pool)
    .await?;
    Ok(())
}

fn clamp(ms: u64) -> i32 {
    ms.try_into().unwrap_or(i32::MAX)
}

pub enum Claim {
    /// This request owns the key and must run the checkout as this order: a new one, or the
    /// one an earlier request with the key left unfinished.
    Claimed {
        order_id: Uuid,
    },
    /// The same request already ran: answer what it answered.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    Mismatch,
    InProgress,
}

/// Claims `key` for `held`'s caller. A claim left by a request of this instance is taken over
/// at once (`held` proves none of ours runs it now); another instance's only once stale.
#[tracing::instrument(name = "db.claim_idempotency_key", skip_all)]
pub async fn claim(
    pool: &PgPool,
    held: &KeyHeld,
    fingerprint: &[u8],
    new_order: Uuid,
) -> Result<Claim, sqlx::Error> {
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, instance)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id, key) DO UPDATE SET
               locked_at = now(),
               instance = EXCLUDED.instance,
               order_id = coalesce(idempotency_keys.order_id, EXCLUDED.order_id)
           WHERE idempotency_keys.response_status IS NULL
             AND idempotency_keys.request_hash = EXCLUDED.request_hash
             AND (idempotency_keys.instance = EXCLUDED.instance
                  OR idempotency_keys.locked_at < now() - $6::text::interval)
           RETURNING order_id AS "order_id!""#,
        held.user_id(),
        held.key(),
        fingerprint,
        new_order,
        held.instance(),
        STALE_CLAIM
    )
    .fetch_optional(pool)
    .await?;
    if let Some(order_id) = claimed {
        return Ok(Claim::Claimed { order_id });
    }
    let existing = sqlx::query!(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = $1 AND key = $2",
        held.user_id(),
        held.key()
    )
    .fetch_optional(pool)
    .await?;
    Ok(match existing {
        // Deleted (released) in between: the client may simply retry.
        None => Claim::InProgress,
        Some(row) if row.request_hash != fingerprint => Claim::Mismatch,
        Some(row) => match (row.response_status, row.response_body) {
            (Some(status), Some(body)) => Claim::Replay {
                status: status as u16,
                body,
            },
            _ => Claim::InProgress,
        },
    })
}

#[tracing::instrument(name = "db.remember_response", skip_all, fields(status))]
pub async fn remember(
    pool: &PgPool,
    held: &KeyHeld,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4
         WHERE user_id = $1 AND key = $2",
        held.user_id(),
        held.key(),
        status as i16,
        body
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives a key back when its request failed before any provider was called, so that a retry
/// can run anywhere at once.
#[tracing::instrument(name = "db.release_idempotency_key", skip_all)]
pub async fn release(pool: &PgPool, held: &KeyHeld) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE user_id = $1 AND key = $2 AND response_status IS NULL",
        held.user_id(),
        held.key()
    )
    .execute(pool)
    .await?;
    Ok(())
}

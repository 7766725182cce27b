//! Orders and idempotency keys in Postgres.

use sqlx::PgPool;
use uuid::Uuid;

use super::{process::Outcome, request::Order};

/// In-progress keys older than this are taken over: their request died without an answer.
const STALE_CLAIM: &str = "5 minutes";

pub async fn insert(pool: &PgPool, id: Uuid, order: &Order) -> Result<(), sqlx::Error> {
    let items = serde_json::to_value(&order.items).expect("items serialize");
    sqlx::query!(
        "INSERT INTO orders (id, customer_email, amount_cents, currency, items)
         VALUES ($1, $2, $3, $4, $5)",
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
    /// This request owns the key and must run the checkout.
    Claimed,
    /// The same request already ran: answer what it answered.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    Mismatch,
    InProgress,
}

pub async fn claim(pool: &PgPool, key: &str, fingerprint: &[u8]) -> Result<Claim, sqlx::Error> {
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET locked_at = now()
           WHERE idempotency_keys.response_status IS NULL
             AND idempotency_keys.request_hash = EXCLUDED.request_hash
             AND idempotency_keys.locked_at < now() - $3::text::interval
           RETURNING key"#,
        key,
        fingerprint,
        STALE_CLAIM
    )
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let existing = sqlx::query!(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE key = $1",
        key
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

pub async fn remember(
    pool: &PgPool,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET response_status = $2, response_body = $3 WHERE key = $1",
        key,
        status as i16,
        body
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives a key back when its request failed before charging, so that a retry can run.
pub async fn release(pool: &PgPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE key = $1 AND response_status IS NULL",
        key
    )
    .execute(pool)
    .await?;
    Ok(())
}

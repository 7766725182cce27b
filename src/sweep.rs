//! The sweep: one pass, at start-up and then periodically, over what interrupted work left
//! behind. In turn: the storage's own pass (objects without rows, rows' objects half-moved),
//! the resumable uploads that expired, the files whose lifetime is over, and the quota
//! reservations of instances that are gone.
//! Each part knows only its own: the storage knows bytes, the resumable uploads their rows, the
//! quota its reservations.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tracing::Instrument;

use crate::{
    access::quota,
    base::telemetry::{self, metrics},
    catalog::lifetimes,
    resumable::expiry,
    storage::{RepairError, Repaired, Storage},
};

/// One pass of the sweep.
pub async fn sweep(storage: &Storage, pool: &PgPool) -> Result<Repaired, RepairError> {
    let swept = run(storage, pool)
        .instrument(tracing::info_span!("sweep", backend = storage.backend()))
        .await;
    metrics::sweep_run(if swept.is_ok() { "ok" } else { "error" });
    swept
}

async fn run(storage: &Storage, pool: &PgPool) -> Result<Repaired, RepairError> {
    // Reservations made after this moment belong to instances that may not have been seen.
    let listed_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(pool)
        .await?;
    let (report, alive) = storage.repair(pool).await?;
    let expired = expiry::expire(storage, pool).await?;
    let lived = lifetimes::delete_expired(storage, pool).await?;
    metrics::sweep_actions("kept", report.kept);
    metrics::sweep_actions("removed", report.removed);
    metrics::sweep_actions("expired", expired);
    metrics::sweep_actions("lifetime_over", lived);
    let released = quota::release_dead(pool, &alive, listed_at).await?;
    if released > 0 {
        tracing::info!(
            users = released,
            "gave back quota held by stopped instances"
        );
    }
    if report != Repaired::default() {
        tracing::info!(
            kept = report.kept,
            removed = report.removed,
            "storage sweep repaired leftovers"
        );
    }
    Ok(report)
}

/// Sweeps every `interval` for as long as the returned task runs.
pub fn spawn_periodic(
    storage: Arc<Storage>,
    pool: PgPool,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = sweep(&storage, &pool).await {
                tracing::warn!(error = %telemetry::cause_chain(&error), "storage sweep failed; will retry");
            }
        }
    })
}

//! Repairs what interrupted work left behind, on either backend, and gives back the quota that
//! stopped instances had reserved. The row decides each object's fate: present → kept; absent
//! → removed.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tracing::Instrument;

use super::Storage;
use crate::{access::quota, base::telemetry::metrics};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("could not read or repair the storage")]
    Storage(#[from] std::io::Error),
    #[error("could not ask the database about an object change")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub kept: usize,
    pub removed: usize,
}

/// One pass over the leftovers of interrupted work and over the quota reservations of
/// instances that are gone.
pub async fn sweep(storage: &Storage, pool: &PgPool) -> Result<SweepReport, SweepError> {
    let swept = settle(storage, pool)
        .instrument(tracing::info_span!("sweep", backend = storage.backend()))
        .await;
    metrics::sweep_run(if swept.is_ok() { "ok" } else { "error" });
    swept
}

async fn settle(storage: &Storage, pool: &PgPool) -> Result<SweepReport, SweepError> {
    // Reservations made after this moment belong to instances that may not have been seen.
    let listed_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(pool)
        .await?;
    let (report, alive) = match storage {
        Storage::Fs(store) => super::fs::sweep::settle(store, pool).await?,
        Storage::S3(store) => store.sweep().await?,
    };
    let expired = crate::api::tus::sweep::sweep(storage, pool).await?;
    metrics::sweep_actions("kept", report.kept);
    metrics::sweep_actions("removed", report.removed);
    metrics::sweep_actions("expired", expired);
    let released = quota::release_dead(pool, &alive, listed_at).await?;
    if released > 0 {
        tracing::info!(
            users = released,
            "gave back quota held by stopped instances"
        );
    }
    if report != SweepReport::default() {
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
                tracing::warn!(error = %crate::base::problem::cause_chain(&error), "storage sweep failed; will retry");
            }
        }
    })
}

//! Which intake processes are running, as Postgres sees them: each holds a session advisory
//! lock named by its instance id, for its whole life, on a connection of its own. When a process
//! dies its connection closes and the lock goes with it, so an instance whose lock can be taken
//! is gone. (The local filesystem backend has its own, finer record: a lock file per journal.)

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How often the liveness lock's connection is checked, and re-made if Postgres dropped it.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The lock's key: the last (random) 8 bytes of a UUID v7.
fn key(instance: Uuid) -> i64 {
    let bytes = instance.as_bytes();
    i64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"))
}

/// This process's claim to be running; dropping it gives the claim up.
#[derive(Debug)]
pub struct Liveness {
    keeper: JoinHandle<()>,
}

impl Liveness {
    pub async fn hold(options: PgConnectOptions, instance: Uuid) -> Result<Self, sqlx::Error> {
        let conn = lock(&options, instance).await?;
        let keeper = tokio::spawn(keep(conn, options, instance));
        Ok(Self { keeper })
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

async fn lock(options: &PgConnectOptions, instance: Uuid) -> Result<PgConnection, sqlx::Error> {
    let mut conn = PgConnection::connect_with(options).await?;
    sqlx::query!("SELECT pg_advisory_lock($1)", key(instance))
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Holds the connection; if Postgres drops it (a restart), takes the lock again on a new one.
/// Meanwhile other instances may take this one for gone: what they settle is guarded by the
/// database itself (`claim_intents`), so that costs an upload, never a file.
async fn keep(mut conn: PgConnection, options: PgConnectOptions, instance: Uuid) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    loop {
        ticks.tick().await;
        if conn.ping().await.is_ok() {
            continue;
        }
        match lock(&options, instance).await {
            Ok(new) => conn = new,
            Err(error) => {
                tracing::warn!(%error, "could not renew this instance's liveness lock; will retry")
            }
        }
    }
}

/// Those of `instances` that are running. Taking a lock tells; the transaction's end gives
/// back what was taken.
#[tracing::instrument(name = "db.running_instances", skip_all, fields(instances = instances.len()))]
pub async fn running(pool: &PgPool, instances: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i64> = instances.iter().copied().map(key).collect();
    let mut tx = pool.begin().await?;
    let held = sqlx::query_scalar!(
        r#"SELECT k AS "k!" FROM UNNEST($1::int8[]) AS k WHERE NOT pg_try_advisory_xact_lock(k)"#,
        &keys
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(instances
        .iter()
        .copied()
        .filter(|instance| held.contains(&key(*instance)))
        .collect())
}

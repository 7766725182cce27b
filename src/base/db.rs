//! The Postgres pool, migrations, and how database failures are told apart.

use std::io;

use sqlx::{
    Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::base::configuration::{DatabaseSettings, SettingsError};

pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, SettingsError> {
    let (main, _) = budget(settings.max_connections);
    Ok(pool_with(settings, main, settings.connect_options()?))
}

/// `database.max_connections` is one budget for the process: a quarter (at least one) for quota
/// bookkeeping, the rest for the requests.
fn budget(max_connections: u32) -> (u32, u32) {
    let bookkeeping = (max_connections / 4).max(1);
    (
        max_connections.saturating_sub(bookkeeping).max(1),
        bookkeeping,
    )
}

/// For quota bookkeeping: statements that only move counters between a user's row and rows
/// that say what to undo. They commit without waiting for the WAL flush, so a user's row is
/// locked for microseconds rather than an fsync, and one user's uploads do not queue behind each
/// other. A Postgres crash can lose such a commit only whole, and the next synchronous commit
/// (every upload's) makes it durable.
pub fn bookkeeping_pool(settings: &DatabaseSettings) -> Result<PgPool, SettingsError> {
    let options = settings
        .connect_options()?
        .options([("synchronous_commit", "off")]);
    let (_, bookkeeping) = budget(settings.max_connections);
    Ok(pool_with(settings, bookkeeping, options))
}

fn pool_with(settings: &DatabaseSettings, size: u32, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(settings.acquire_timeout())
        // A pooled connection is pinged before it is handed out, within the acquire timeout:
        // a Postgres that accepts and never answers is found there, not by a request that
        // waits on its statement for as long as the kernel keeps the connection.
        .test_before_acquire(true)
        .connect_lazy_with(options)
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(
        "could not connect to Postgres at {address} as role `{role}`, database `{database}`: {cause} (check that it runs there, and database.url or APP__DATABASE__URL)"
    )]
    Unreachable {
        address: String,
        role: String,
        database: String,
        /// Postgres' own words, or the network's, without sqlx's wrapping.
        cause: String,
    },
    #[error("could not apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool, once Postgres has accepted one connection and the migrations are applied. The
/// connection is tried alone first, so that a failure names the server, the role and the cause
/// instead of ending in a pool timeout.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, ConnectError> {
    let options = settings.connect_options()?;
    let unreachable = |error: sqlx::Error| ConnectError::Unreachable {
        address: format!("{}:{}", options.get_host(), options.get_port()),
        role: options.get_username().to_owned(),
        database: options
            .get_database()
            .unwrap_or(options.get_username())
            .to_owned(),
        cause: match &error {
            sqlx::Error::Database(db) => db.message().to_owned(),
            sqlx::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        },
    };
    let wait = settings.acquire_timeout();
    let probe = tokio::time::timeout(wait, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            let silent = format!("no answer within {} s", wait.as_secs());
            unreachable(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                silent,
            )))
        })?
        .map_err(unreachable)?;
    // Only a probe: closing it politely is not worth waiting for an error about.
    drop(probe.close().await);
    let pool = pool(settings)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// `intake migrate`: connects, applies what is pending, disconnects.
pub async fn migrate_once(settings: &DatabaseSettings) -> Result<(), ConnectError> {
    connect(settings).await?.close().await;
    Ok(())
}

/// True when the error means "Postgres cannot be reached or will not serve us right now", as
/// opposed to a query that Postgres answered with an error.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P: operator intervention
            // (admin shutdown, crash recovery, cannot connect now); 55000 is what a database
            // with ALLOW_CONNECTIONS false answers.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "55000"
        }),
        _ => false,
    }
}

/// Whether a failed write may nevertheless have been committed. Only errors that Postgres
/// itself answered prove that the statement did not take effect.
pub fn outcome_unknown(error: &sqlx::Error) -> bool {
    !matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pools_together_stay_within_max_connections() {
        for max in 2..=64 {
            let (main, bookkeeping) = budget(max);
            assert_eq!(main + bookkeeping, max, "{max}");
            assert!(main >= bookkeeping && bookkeeping >= 1, "{max}");
        }
        assert_eq!(budget(16), (12, 4));
    }
}

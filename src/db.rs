//! The Postgres pool, migrations, and how database failures are told apart.

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::configuration::{DatabaseSettings, SettingsError};

pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, SettingsError> {
    Ok(pool_with(settings, settings.connect_options()?))
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
    Ok(pool_with(settings, options))
}

fn pool_with(settings: &DatabaseSettings, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_lazy_with(options)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// `intake migrate`: connects, applies what is pending, disconnects.
pub async fn migrate_once(
    settings: &DatabaseSettings,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pool = pool(settings)?;
    migrate(&pool).await?;
    pool.close().await;
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

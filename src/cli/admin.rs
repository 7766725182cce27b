//! `intake users …` and `intake tokens …`: managing who may call the API, from the command line
//! (`docker compose exec intake intake tokens create --user alice` in the container).

use std::{io::Write, time::Duration};

use clap::Subcommand;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use crate::{
    access::auth::store::{self, StoreError},
    base::{configuration::DatabaseSettings, db},
};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user that tokens can then be made for.
    Create {
        /// The user's unique name, 1 to 100 characters (e.g. `alice`).
        name: String,
        /// A contact address, shown by `GET /users/{id}`.
        #[arg(long)]
        email: Option<String>,
    },
    /// Every user: id, name, email, files, bytes stored.
    List,
    /// Delete a user and their tokens; refused while they own files.
    Delete {
        /// The user's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token for a user. The token is printed once, on stdout; only its hash is kept.
    Create {
        /// The name of the user the token acts for (see `users create`).
        #[arg(long)]
        user: String,
        /// How long it stays valid, e.g. `30d`, `12h`, `1week`; without it, until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Revoke a token by its id (see `tokens list`). Requests with it are refused at once.
    Revoke {
        /// The token's id, as `tokens list` shows it (not the token itself).
        id: Uuid,
    },
    /// Every token: id, user, created, expires, last used, status.
    List,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Connect(Box<db::ConnectError>),
    #[error("the expiry is too far in the future")]
    Expiry,
    #[error("could not write the output")]
    Output(#[from] std::io::Error),
}

/// Runs against the configured database, migrating it first so that the commands work before
/// the server has ever started.
pub(super) async fn connect(settings: &DatabaseSettings) -> Result<PgPool, AdminError> {
    db::connect(settings)
        .await
        .map_err(|error| AdminError::Connect(Box::new(error)))
}

pub async fn users(
    command: UsersCommand,
    settings: &DatabaseSettings,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let pool = connect(settings).await?;
    match command {
        UsersCommand::Create { name, email } => {
            let id = store::create_user(&pool, &name, email.as_deref()).await?;
            writeln!(out, "created user {name} (id {id})")?;
        }
        UsersCommand::List => {
            writeln!(
                out,
                "{:>6}  {:<16}  {:<32}  {:>8}  BYTES",
                "ID", "NAME", "EMAIL", "FILES"
            )?;
            for user in store::list_users(&pool).await? {
                writeln!(
                    out,
                    "{:>6}  {:<16}  {:<32}  {:>8}  {}",
                    user.id,
                    user.name,
                    user.email.as_deref().unwrap_or("-"),
                    user.files,
                    user.used_bytes
                )?;
            }
        }
        UsersCommand::Delete { name } => {
            store::delete_user(&pool, &name).await?;
            writeln!(out, "deleted user {name} and their tokens")?;
        }
    }
    pool.close().await;
    Ok(())
}

/// `out` gets what scripts capture (the new token alone); `note` gets what people read.
pub async fn tokens(
    command: TokensCommand,
    settings: &DatabaseSettings,
    out: &mut impl Write,
    note: &mut impl Write,
) -> Result<(), AdminError> {
    let pool = connect(settings).await?;
    match command {
        TokensCommand::Create { user, expires_in } => {
            let expires_at = expires_in
                .map(|ttl| {
                    OffsetDateTime::now_utc()
                        .checked_add(time::Duration::try_from(ttl).map_err(|_| AdminError::Expiry)?)
                        .ok_or(AdminError::Expiry)
                })
                .transpose()?;
            let token = store::create_token(&pool, &user, expires_at).await?;
            writeln!(out, "{}", token.secret.expose_secret())?;
            writeln!(
                note,
                "token {} for {user}, expires {}; it is shown only this once",
                token.id,
                when(token.expires_at, "never"),
            )?;
        }
        TokensCommand::Revoke { id } => {
            store::revoke_token(&pool, id).await?;
            writeln!(out, "revoked token {id}")?;
        }
        TokensCommand::List => {
            writeln!(
                out,
                "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  STATUS",
                "ID", "USER", "CREATED", "EXPIRES", "LAST USED"
            )?;
            let now = OffsetDateTime::now_utc();
            for token in store::list_tokens(&pool).await? {
                let status = if token.revoked_at.is_some() {
                    "revoked"
                } else if token.expires_at.is_some_and(|at| at <= now) {
                    "expired"
                } else {
                    "active"
                };
                writeln!(
                    out,
                    "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  {status}",
                    token.id,
                    token.user,
                    when(Some(token.created_at), "-"),
                    when(token.expires_at, "never"),
                    when(token.last_used_at, "never"),
                )?;
            }
        }
    }
    pool.close().await;
    Ok(())
}

/// A time to the second, in UTC.
fn when(at: Option<OffsetDateTime>, otherwise: &str) -> String {
    at.and_then(|at| at.replace_nanosecond(0).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| otherwise.to_owned())
}

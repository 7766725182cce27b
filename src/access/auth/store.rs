//! Users and tokens in Postgres.

use secrecy::SecretString;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ANONYMOUS, token};

/// A valid token and the user it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub token_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user named `{0}` already exists")]
    UserExists(String),
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    #[error("the `{ANONYMOUS}` user stands for requests made with auth off; it has no tokens")]
    AnonymousToken,
    #[error("no token with id {0}")]
    NoSuchToken(Uuid),
    #[error("the `{ANONYMOUS}` user owns what is uploaded with auth off; it cannot be deleted")]
    AnonymousDelete,
    #[error(
        "`{0}` still owns {1} files or unfinished uploads: delete them first (DELETE /files/{{id}}, DELETE /tus/{{id}})"
    )]
    UserOwnsFiles(String, i64),
    #[error("could not draw random bytes for the token")]
    Random(#[from] getrandom::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The valid (known, not revoked, not expired) token with this hash. `last_used_at` is written
/// at most once a minute per token, so that busy clients do not turn every request into a write.
#[tracing::instrument(name = "db.authenticate", skip_all)]
pub async fn authenticate(
    pool: &PgPool,
    hash: token::TokenHash,
) -> Result<Option<Caller>, sqlx::Error> {
    let Some(found) = sqlx::query!(
        r#"
        SELECT id, user_id,
               coalesce(last_used_at < now() - interval '1 minute', true) AS "stale!"
        FROM api_tokens
        WHERE token_hash = $1
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
        "#,
        &hash.0[..]
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    if found.stale {
        sqlx::query!(
            r#"
            UPDATE api_tokens SET last_used_at = now()
            WHERE id = $1 AND coalesce(last_used_at < now() - interval '1 minute', true)
            "#,
            found.id
        )
        .execute(pool)
        .await?;
    }
    Ok(Some(Caller {
        user_id: found.user_id,
        token_id: found.id,
    }))
}

pub async fn anonymous_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM users WHERE name = $1", ANONYMOUS)
        .fetch_one(pool)
        .await
}

pub async fn create_user(
    pool: &PgPool,
    name: &str,
    email: Option<&str>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar!(
        "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id",
        name,
        email
    )
    .fetch_one(pool)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::UserExists(name.to_owned())
        }
        _ => error.into(),
    })
}

/// A user as `users list` shows it.
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub files: i64,
    pub used_bytes: i64,
}

pub async fn list_users(pool: &PgPool) -> Result<Vec<UserInfo>, StoreError> {
    Ok(sqlx::query_as!(
        UserInfo,
        r#"
        SELECT u.id, u.name, u.email, u.used_bytes,
               (SELECT count(*) FROM files f WHERE f.owner_id = u.id) AS "files!"
        FROM users u ORDER BY u.id
        "#
    )
    .fetch_all(pool)
    .await?)
}

/// Deletes a user and their tokens; refused while they own files or unfinished resumable
/// uploads, whose bytes would otherwise lose their owner.
pub async fn delete_user(pool: &PgPool, name: &str) -> Result<(), StoreError> {
    if name == ANONYMOUS {
        return Err(StoreError::AnonymousDelete);
    }
    let mut tx = pool.begin().await?;
    // `files.owner_id` has no foreign key (files::record::insert_all says why). This lock waits
    // for the uploads committing now, whose files the check below then sees, and holds back the
    // next ones until the user is gone, when they find no owner and store nothing.
    sqlx::query!("LOCK TABLE files IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query_scalar!(
        "DELETE FROM users WHERE name = $1
         AND NOT EXISTS (SELECT 1 FROM files WHERE files.owner_id = users.id)
         AND NOT EXISTS (SELECT 1 FROM resumable_uploads r WHERE r.owner_id = users.id)
         RETURNING id",
        name
    )
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    if deleted.is_some() {
        return Ok(());
    }
    let owned = sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM files f WHERE f.owner_id = u.id)
                + (SELECT count(*) FROM resumable_uploads r WHERE r.owner_id = u.id) AS "files!"
           FROM users u WHERE u.name = $1"#,
        name
    )
    .fetch_optional(pool)
    .await?;
    Err(match owned {
        Some(files) => StoreError::UserOwnsFiles(name.to_owned(), files),
        None => StoreError::NoSuchUser(name.to_owned()),
    })
}

pub struct NewToken {
    pub id: Uuid,
    /// Shown once; only its hash is stored.
    pub secret: SecretString,
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn create_token(
    pool: &PgPool,
    user: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<NewToken, StoreError> {
    if user == ANONYMOUS {
        return Err(StoreError::AnonymousToken);
    }
    let (secret, hash) = token::generate()?;
    let id = Uuid::now_v7();
    sqlx::query_scalar!(
        r#"
        INSERT INTO api_tokens (id, user_id, token_hash, expires_at)
        SELECT $1, id, $2, $3 FROM users WHERE name = $4
        RETURNING id
        "#,
        id,
        &hash.0[..],
        expires_at,
        user
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NoSuchUser(user.to_owned()))?;
    Ok(NewToken {
        id,
        secret,
        expires_at,
    })
}

/// Revoking is idempotent: a token revoked twice keeps its first revocation time.
pub async fn revoke_token(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    sqlx::query_scalar!(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
        id
    )
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NoSuchToken(id))?;
    Ok(())
}

pub struct TokenInfo {
    pub id: Uuid,
    pub user: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as!(
        TokenInfo,
        r#"
        SELECT t.id, u.name AS user, t.created_at, t.expires_at, t.last_used_at, t.revoked_at
        FROM api_tokens t JOIN users u ON u.id = t.user_id
        ORDER BY t.created_at, t.id
        "#
    )
    .fetch_all(pool)
    .await
}

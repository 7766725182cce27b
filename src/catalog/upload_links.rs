//! Upload links: rows of `upload_links`, each the hash of a secret that lets its holder upload
//! files to the link's creator, within the link's limits. Made, listed and revoked by their
//! creator; looked up by anyone holding the URL; counted by the commit of each file that comes
//! through one.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct UploadLink {
    pub id: Uuid,
    /// The creator: the files that come through belong to them, and count on their quota.
    pub owner: i64,
    pub created_at: OffsetDateTime,
    /// `None`: until revoked.
    pub expires_at: Option<OffsetDateTime>,
    pub max_files: Option<i32>,
    pub max_file_bytes: Option<i64>,
    /// Media types or `type/*`; empty: whatever the server allows.
    pub allowed_content_types: Vec<String>,
    /// Files committed through it so far.
    pub files: i32,
}

/// What a new link allows.
pub struct Limits {
    pub expires_at: Option<OffsetDateTime>,
    pub max_files: Option<i32>,
    pub max_file_bytes: Option<i64>,
    pub allowed_content_types: Vec<String>,
}

impl UploadLink {
    pub fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= OffsetDateTime::now_utc())
    }

    /// Whether it has received all the files it allows.
    pub fn full(&self) -> bool {
        self.max_files.is_some_and(|max| self.files >= max)
    }
}

/// A link for `owner` whose secret hashes to `hash`.
#[tracing::instrument(name = "db.create_upload_link", skip_all, fields(owner))]
pub async fn create(
    pool: &PgPool,
    owner: i64,
    hash: &[u8; 32],
    limits: &Limits,
) -> Result<UploadLink, sqlx::Error> {
    sqlx::query_as!(
        UploadLink,
        r#"
        INSERT INTO upload_links
            (id, owner_id, secret_hash, expires_at, max_files, max_file_bytes, allowed_content_types)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING id, owner_id AS owner, created_at, expires_at, max_files, max_file_bytes,
                  allowed_content_types, files
        "#,
        Uuid::now_v7(),
        owner,
        hash.as_slice(),
        limits.expires_at,
        limits.max_files,
        limits.max_file_bytes,
        &limits.allowed_content_types,
    )
    .fetch_one(pool)
    .await
}

/// `owner`'s links, oldest first.
#[tracing::instrument(name = "db.list_upload_links", skip_all, fields(owner))]
pub async fn list(pool: &PgPool, owner: i64) -> Result<Vec<UploadLink>, sqlx::Error> {
    sqlx::query_as!(
        UploadLink,
        r#"
        SELECT id, owner_id AS owner, created_at, expires_at, max_files, max_file_bytes,
               allowed_content_types, files
        FROM upload_links WHERE owner_id = $1
        ORDER BY created_at, id
        "#,
        owner
    )
    .fetch_all(pool)
    .await
}

/// Revokes `owner`'s link `id`: whether there was one. The files that came through stay.
#[tracing::instrument(name = "db.delete_upload_link", skip_all, fields(link_id = %id))]
pub async fn delete(pool: &PgPool, owner: i64, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM upload_links WHERE id = $1 AND owner_id = $2",
        id,
        owner
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// The link whose secret has this hash, expired or not.
#[tracing::instrument(name = "db.find_upload_link", skip_all)]
pub async fn by_secret(pool: &PgPool, hash: &[u8; 32]) -> Result<Option<UploadLink>, sqlx::Error> {
    sqlx::query_as!(
        UploadLink,
        r#"
        SELECT id, owner_id AS owner, created_at, expires_at, max_files, max_file_bytes,
               allowed_content_types, files
        FROM upload_links WHERE secret_hash = $1
        "#,
        hash.as_slice()
    )
    .fetch_optional(pool)
    .await
}

/// Whether resumable upload (or file) `id` was created through link `link`: a link's holder
/// reaches only those.
#[tracing::instrument(name = "db.came_through_link", skip_all, fields(upload_id = %id))]
pub async fn came_through(pool: &PgPool, link: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        SELECT EXISTS (SELECT FROM resumable_uploads WHERE id = $1 AND upload_link_id = $2)
            OR EXISTS (SELECT FROM files WHERE id = $1 AND upload_link_id = $2) AS "found!"
        "#,
        id,
        link
    )
    .fetch_one(pool)
    .await
}

/// Link `id`, locked until the end of the transaction, so that the files committed through it
/// are counted one commit after the other; `None` once revoked.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<UploadLink>, sqlx::Error> {
    sqlx::query_as!(
        UploadLink,
        r#"
        SELECT id, owner_id AS owner, created_at, expires_at, max_files, max_file_bytes,
               allowed_content_types, files
        FROM upload_links WHERE id = $1 FOR UPDATE
        "#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Counts `files` more files through link `id` (locked by `lock`).
pub async fn count(conn: &mut PgConnection, id: Uuid, files: i32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE upload_links SET files = files + $2 WHERE id = $1",
        id,
        files
    )
    .execute(conn)
    .await?;
    Ok(())
}

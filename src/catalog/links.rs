//! Share links: rows of `share_links`, each naming one file and the hash of the secret its URL
//! carries. Made, listed and revoked by the file's owner; looked up by anyone holding the URL.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::record::FileRecord;

const SECRET_BYTES: usize = 32;
/// 32 bytes in unpadded base64url.
const SECRET_LEN: usize = 43;

#[derive(Debug, Clone)]
pub struct LinkRecord {
    pub id: Uuid,
    pub file_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub max_downloads: Option<i32>,
    pub downloads: i32,
}

/// A new link's secret (256 random bits, in the URL only) and the hash that is stored.
pub fn new_secret() -> Result<(String, [u8; 32]), getrandom::Error> {
    let mut random = [0u8; SECRET_BYTES];
    getrandom::fill(&mut random)?;
    let secret = URL_SAFE_NO_PAD.encode(random);
    let hash = Sha256::digest(secret.as_bytes()).into();
    Ok((secret, hash))
}

/// The hash to look a secret up by, if it is well-formed; a malformed one never reaches the
/// database.
pub fn secret_hash(secret: &str) -> Option<[u8; 32]> {
    let well_formed = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| Sha256::digest(secret.as_bytes()).into())
}

/// A link to file `file_id`, if `owner` owns it.
#[tracing::instrument(name = "db.create_link", skip_all, fields(file_id = %file_id))]
pub async fn create(
    pool: &PgPool,
    owner: i64,
    file_id: Uuid,
    hash: &[u8; 32],
    expires_at: Option<OffsetDateTime>,
    max_downloads: Option<i32>,
) -> Result<Option<LinkRecord>, sqlx::Error> {
    sqlx::query_as!(
        LinkRecord,
        r#"
        INSERT INTO share_links (id, file_id, secret_hash, expires_at, max_downloads)
        SELECT $1, id, $3, $4, $5 FROM files
        WHERE id = $2 AND owner_id = $6 AND (expires_at IS NULL OR expires_at > now())
        RETURNING id, file_id, created_at, expires_at, max_downloads, downloads
        "#,
        Uuid::now_v7(),
        file_id,
        hash.as_slice(),
        expires_at,
        max_downloads,
        owner
    )
    .fetch_optional(pool)
    .await
}

/// The links of file `file_id` of `owner`, oldest first.
pub async fn list(
    pool: &PgPool,
    owner: i64,
    file_id: Uuid,
) -> Result<Vec<LinkRecord>, sqlx::Error> {
    sqlx::query_as!(
        LinkRecord,
        r#"
        SELECT l.id, l.file_id, l.created_at, l.expires_at, l.max_downloads, l.downloads
        FROM share_links l JOIN files f ON f.id = l.file_id
        WHERE l.file_id = $1 AND f.owner_id = $2
          AND (f.expires_at IS NULL OR f.expires_at > now())
        ORDER BY l.created_at, l.id
        "#,
        file_id,
        owner
    )
    .fetch_all(pool)
    .await
}

/// Revokes link `id` of file `file_id` of `owner`: whether there was one.
#[tracing::instrument(name = "db.delete_link", skip_all, fields(link_id = %id))]
pub async fn delete(
    pool: &PgPool,
    owner: i64,
    file_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        r#"
        DELETE FROM share_links l USING files f
        WHERE l.id = $1 AND l.file_id = $2 AND f.id = l.file_id AND f.owner_id = $3
        "#,
        id,
        file_id,
        owner
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// The link whose secret has this hash, with its file.
#[tracing::instrument(name = "db.find_link", skip_all)]
pub async fn shared(
    pool: &PgPool,
    hash: &[u8; 32],
) -> Result<Option<(LinkRecord, FileRecord)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"
        SELECT l.id, l.file_id, l.created_at AS link_created_at, l.expires_at, l.max_downloads,
               l.downloads, f.filename, f.content_type, f.size, f.sha256, f.created_at, f.inline,
               f.expires_at AS file_expires_at, f.upload_link_id, f.metadata
        FROM share_links l JOIN files f ON f.id = l.file_id
        WHERE l.secret_hash = $1 AND (f.expires_at IS NULL OR f.expires_at > now())
        "#,
        hash.as_slice()
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let link = LinkRecord {
            id: row.id,
            file_id: row.file_id,
            created_at: row.link_created_at,
            expires_at: row.expires_at,
            max_downloads: row.max_downloads,
            downloads: row.downloads,
        };
        let file = FileRecord {
            id: row.file_id,
            filename: row.filename,
            content_type: row.content_type,
            size: row.size,
            sha256: row.sha256,
            created_at: row.created_at,
            inline: row.inline,
            expires_at: row.file_expires_at,
            upload_link: row.upload_link_id,
            metadata: row.metadata,
        };
        (link, file)
    }))
}

/// One whole download through link `id`.
#[tracing::instrument(name = "db.count_download", skip_all, fields(link_id = %id))]
pub async fn count_download(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE share_links SET downloads = downloads + 1 WHERE id = $1",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_and_malformed_ones_refused() {
        let (secret, hash) = new_secret().unwrap();
        assert_eq!(secret_hash(&secret), Some(hash));
        assert_ne!(new_secret().unwrap().0, secret);
        for bad in [
            "",
            &secret[1..],
            &format!("{secret}x"),
            &secret.replace(|_| true, "/"),
        ] {
            assert_eq!(secret_hash(bad), None, "{bad:?}");
        }
    }
}

//! The listing of a user's files, a page at a time (`GET /files`).

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::record::FileRecord;

/// Where a page of the listing starts: just after this (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// One page of `owner`'s files, newest first; `limit + 1` rows are read to know whether
/// another page follows.
#[tracing::instrument(name = "db.list_files", skip_all, fields(owner, limit))]
pub async fn list(
    pool: &PgPool,
    owner: i64,
    limit: i64,
    after: Option<Cursor>,
) -> Result<Vec<FileRecord>, sqlx::Error> {
    let (created_at, id) = after.map_or((None, None), |c| (Some(c.created_at), Some(c.id)));
    sqlx::query_as!(
        FileRecord,
        r#"
        SELECT id, filename, content_type, size, sha256, created_at, inline, expires_at,
               upload_link_id AS upload_link, metadata
        FROM files
        WHERE owner_id = $1 AND (expires_at IS NULL OR expires_at > now())
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $4
        "#,
        owner,
        created_at,
        id,
        limit + 1
    )
    .fetch_all(pool)
    .await
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.created_at.unix_timestamp_nanos() / 1000,
            self.id.simple()
        )
    }

    /// `None` for anything `encode` cannot have made, including times before 1970 (no file is
    /// that old, and Postgres cannot hold every time `time` can).
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('_')?;
        let micros: i128 = micros.parse().ok().filter(|m| *m >= 0)?;
        Some(Self {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?)
                .ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000)
                .unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for garbage in [
            "",
            "_",
            "12_notauuid",
            "x_0190",
            "99999999999999999999999999999_0",
            "-300000000000000000_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
            "-1_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
        ] {
            assert_eq!(Cursor::decode(garbage), None, "{garbage}");
        }
    }
}

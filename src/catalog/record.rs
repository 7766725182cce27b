//! The `files` table and the file object clients see.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::base::telemetry;

#[derive(Debug, Clone)]
pub struct FileRecord {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// Kept in `file_contents`, not in the storage backend.
    pub inline: bool,
    /// When the file goes by itself (`PATCH /files/{id}`); `None`: until deleted.
    pub expires_at: Option<OffsetDateTime>,
    /// The upload link it came through, if it did.
    pub upload_link: Option<Uuid>,
    /// What the upload hook attached to it.
    pub metadata: Option<serde_json::Value>,
}

/// A file whose bytes are stored, or are to be stored with its row (`inline`), and whose row is
/// about to be written.
#[derive(Debug)]
pub struct NewFile {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: [u8; 32],
    pub inline: Option<Vec<u8>>,
    /// Seconds it is to live from its commit (`expires_in`); `None`: until deleted.
    pub lifetime: Option<i64>,
    /// The upload link it comes through, if it does.
    pub upload_link: Option<Uuid>,
    /// What the upload hook attached to it (a JSON object).
    pub metadata: Option<serde_json::Value>,
    pub origin: Origin,
}

/// How a file came in, as its `file.stored` event tells.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// `multipart`, `tus` or `ietf`.
    pub protocol: &'static str,
    /// The id of the request that finished it (`x-request-id`, in the log's lines).
    pub request_id: Option<Uuid>,
}

impl Origin {
    /// Through `protocol`, in the request being served.
    pub fn here(protocol: &'static str) -> Self {
        Self {
            protocol,
            request_id: telemetry::request_id(),
        }
    }
}

/// A file as the API shows it (DESIGN.md → Uploads).
/// A stored file, as every route shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "019a6b2c-7d1e-7f3a-9c4b-2e5f8a1d3c6b",
    "filename": "report.pdf",
    "content_type": "application/pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "created_at": "2026-11-24T05:01:57.008694Z",
    "expires_at": null,
    "upload_link": null,
    "metadata": null,
    "url": "/files/019a6b2c-7d1e-7f3a-9c4b-2e5f8a1d3c6b/content"
}))]
pub struct FileObject {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Lowercase hex.
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the file goes by itself; `null`: until it is deleted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The id of the upload link the file came through (`POST /upload-links`); `null`: its
    /// owner uploaded it.
    pub upload_link: Option<Uuid>,
    /// What the upload hook (`events.pre_upload`) attached to the file when it let the upload
    /// in: the `metadata` object of its answer; `null`: nothing.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub url: String,
}

impl FileRecord {
    pub fn location(&self) -> String {
        format!("/files/{}", self.id)
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(&self.sha256)
    }

    pub fn to_object(&self) -> FileObject {
        FileObject {
            id: self.id,
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: self.sha256_hex(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            upload_link: self.upload_link,
            metadata: self.metadata.clone(),
            url: format!("{}/content", self.location()),
        }
    }
}

/// Inserts all rows of one upload for `owner` and turns its quota `reservation` into a usage
/// change, in one statement with the files' `file.stored` events: all of it is committed or
/// none. `claims`: the storage intents the
/// rows settle (objects in a bucket), which must all still be there. Returns the rows as stored,
/// or `None` (and changes nothing) when the owner no longer exists.
///
/// The owner is looked up here rather than checked by a foreign key: a foreign key check locks
/// the owner's row, and concurrent uploads of one user turned those locks into multixacts that
/// cost Postgres more than the inserts (migrations/20261126000001). `auth::store::delete_user`
/// keeps a user with files from going.
#[tracing::instrument(name = "db.insert_files", skip_all, fields(owner, files = files.len()))]
pub async fn insert_all(
    conn: &mut PgConnection,
    owner: i64,
    reservation: Uuid,
    files: &[NewFile],
    claims: &[Uuid],
) -> Result<Option<Vec<FileRecord>>, sqlx::Error> {
    let c = Columns::of(files.iter());
    let created_at = sqlx::query_scalar!(
        r#"
        WITH owner AS (
            SELECT id FROM users WHERE id = $1
        ), claimed AS (
            SELECT CASE WHEN cardinality($8::uuid[]) > 0 THEN claim_intents($8) ELSE 0 END
            FROM owner
        ), inserted AS (
            INSERT INTO files AS f (owner_id, id, filename, content_type, size, sha256, inline,
                                    expires_at, upload_link_id, metadata)
            SELECT owner.id, u.id, u.filename, u.content_type, u.size, u.sha256, u.id = ANY($9),
                   now() + u.lifetime * interval '1 second', u.link, u.metadata
            FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::int8[], $7::bytea[], $11::int8[], $12::uuid[], $15::jsonb[])
                AS u (id, filename, content_type, size, sha256, lifetime, link, metadata), claimed, owner
            RETURNING id, size, created_at, f
        ), announced AS (
            INSERT INTO events (type, subject, payload)
            SELECT 'file.stored', i.id, jsonb_build_object(
                       'file', file_json(i.f), 'protocol', o.protocol, 'request_id', o.request_id)
            FROM inserted i
            JOIN UNNEST($3::uuid[], $13::text[], $14::uuid[]) WITH ORDINALITY
                AS o (id, protocol, request_id, n) ON o.id = i.id
            WHERE EXISTS (SELECT FROM live_event_sinks)
            ORDER BY o.n
        ), contents AS (
            INSERT INTO file_contents (file_id, bytes)
            SELECT c.id, c.bytes FROM UNNEST($9::uuid[], $10::bytea[]) AS c (id, bytes)
            WHERE c.id IN (SELECT id FROM inserted)
        ), released AS (
            DELETE FROM quota_reservations
            WHERE upload_id = $2 AND EXISTS (SELECT FROM owner)
            RETURNING bytes
        ), changed AS (
            INSERT INTO usage_changes (user_id, used_delta, released)
            SELECT owner.id, (SELECT sum(size) FROM inserted), coalesce((SELECT bytes FROM released), 0)
            FROM owner
        )
        SELECT created_at AS "created_at!" FROM inserted
        "#,
        owner,
        reservation,
        &c.ids,
        &c.names as &[&str],
        &c.types as &[&str],
        &c.sizes,
        &c.hashes as &[&[u8]],
        claims,
        &c.inline_ids,
        &c.contents as &[&[u8]],
        &c.lifetimes as &[Option<i64>],
        &c.links as &[Option<Uuid>],
        &c.protocols as &[&str],
        &c.request_ids as &[Option<Uuid>],
        &c.metadata as &[Option<&serde_json::Value>],
    )
    .fetch_all(conn)
    .await?;
    // One statement, one transaction: every row has the same `now()`.
    let Some(&created_at) = created_at.first() else {
        return Ok(None);
    };
    Ok(Some(files.iter().map(|f| f.record(created_at)).collect()))
}

impl NewFile {
    /// The row as it was stored at `created_at`.
    pub fn record(&self, created_at: OffsetDateTime) -> FileRecord {
        FileRecord {
            id: self.id,
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: self.sha256.to_vec(),
            created_at,
            inline: self.inline.is_some(),
            expires_at: self
                .lifetime
                .map(|seconds| created_at + time::Duration::seconds(seconds)),
            upload_link: self.upload_link,
            metadata: self.metadata.clone(),
        }
    }
}

/// New files as the column arrays the inserts unnest: one per file, and the inline ones' bytes.
struct Columns<'a> {
    ids: Vec<Uuid>,
    names: Vec<&'a str>,
    types: Vec<&'a str>,
    sizes: Vec<i64>,
    hashes: Vec<&'a [u8]>,
    inline_ids: Vec<Uuid>,
    contents: Vec<&'a [u8]>,
    lifetimes: Vec<Option<i64>>,
    links: Vec<Option<Uuid>>,
    metadata: Vec<Option<&'a serde_json::Value>>,
    protocols: Vec<&'static str>,
    request_ids: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn of(files: impl ExactSizeIterator<Item = &'a NewFile>) -> Self {
        let n = files.len();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            sizes: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            inline_ids: Vec::new(),
            contents: Vec::new(),
            lifetimes: Vec::with_capacity(n),
            links: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            protocols: Vec::with_capacity(n),
            request_ids: Vec::with_capacity(n),
        };
        for file in files {
            c.ids.push(file.id);
            c.names.push(&file.filename);
            c.types.push(&file.content_type);
            c.sizes.push(file.size);
            c.hashes.push(&file.sha256);
            c.lifetimes.push(file.lifetime);
            c.links.push(file.upload_link);
            c.metadata.push(file.metadata.as_ref());
            c.protocols.push(file.origin.protocol);
            c.request_ids.push(file.origin.request_id);
            if let Some(bytes) = &file.inline {
                c.inline_ids.push(file.id);
                c.contents.push(bytes);
            }
        }
        c
    }
}

/// One file of a group commit, with the upload it belongs to.
pub struct BatchRow<'a> {
    pub owner: i64,
    pub reservation: Uuid,
    pub file: &'a NewFile,
}

/// `insert_all` for the files of several uploads, in one statement: each upload's rows, events,
/// usage change and settled reservation, and the storage intents (`claims`, of objects in a
/// bucket) of the rows stored, skipping the uploads whose owner is gone; a claim that fails
/// fails them all. Returns the ids stored and their (common) creation time.
#[tracing::instrument(name = "db.insert_files_together", skip_all, fields(files = rows.len()))]
pub async fn insert_batch(
    pool: &PgPool,
    rows: &[BatchRow<'_>],
    claims: &[Uuid],
) -> Result<Vec<(Uuid, OffsetDateTime)>, sqlx::Error> {
    let owners: Vec<i64> = rows.iter().map(|r| r.owner).collect();
    let reservations: Vec<Uuid> = rows.iter().map(|r| r.reservation).collect();
    let c = Columns::of(rows.iter().map(|r| r.file));
    let stored = sqlx::query!(
        r#"
        WITH kept AS (
            SELECT r.* FROM UNNEST($1::int8[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int8[], $7::bytea[], $10::int8[], $11::uuid[], $14::jsonb[])
                AS r (owner_id, reservation, id, filename, content_type, size, sha256, lifetime, link, metadata)
            WHERE EXISTS (SELECT FROM users WHERE users.id = r.owner_id)
        ), claimed AS (
            SELECT CASE WHEN cardinality($15::uuid[]) > 0
                        THEN claim_intents(ARRAY(SELECT id FROM kept WHERE id = ANY($15)))
                        ELSE 0 END
        ), inserted AS (
            INSERT INTO files AS f (owner_id, id, filename, content_type, size, sha256, inline,
                                    expires_at, upload_link_id, metadata)
            SELECT owner_id, id, filename, content_type, size, sha256, id = ANY($8),
                   now() + lifetime * interval '1 second', link, metadata
            FROM kept, claimed
            RETURNING id, created_at, f
        ), announced AS (
            INSERT INTO events (type, subject, payload)
            SELECT 'file.stored', i.id, jsonb_build_object(
                       'file', file_json(i.f), 'protocol', o.protocol, 'request_id', o.request_id)
            FROM inserted i
            JOIN UNNEST($3::uuid[], $12::text[], $13::uuid[]) WITH ORDINALITY
                AS o (id, protocol, request_id, n) ON o.id = i.id
            WHERE EXISTS (SELECT FROM live_event_sinks)
            ORDER BY o.n
        ), contents AS (
            INSERT INTO file_contents (file_id, bytes)
            SELECT c.id, c.bytes FROM UNNEST($8::uuid[], $9::bytea[]) AS c (id, bytes)
            WHERE c.id IN (SELECT id FROM inserted)
        ), released AS (
            DELETE FROM quota_reservations
            WHERE upload_id IN (SELECT reservation FROM kept)
            RETURNING upload_id, bytes
        ), changed AS (
            INSERT INTO usage_changes (user_id, used_delta, released)
            SELECT k.owner_id, sum(k.size),
                   coalesce((SELECT bytes FROM released WHERE upload_id = k.reservation), 0)
            FROM kept k GROUP BY k.owner_id, k.reservation
        )
        SELECT id AS "id!", created_at AS "created_at!" FROM inserted
        "#,
        &owners,
        &reservations,
        &c.ids,
        &c.names as &[&str],
        &c.types as &[&str],
        &c.sizes,
        &c.hashes as &[&[u8]],
        &c.inline_ids,
        &c.contents as &[&[u8]],
        &c.lifetimes as &[Option<i64>],
        &c.links as &[Option<Uuid>],
        &c.protocols as &[&str],
        &c.request_ids as &[Option<Uuid>],
        &c.metadata as &[Option<&serde_json::Value>],
        claims,
    )
    .fetch_all(pool)
    .await?;
    Ok(stored.into_iter().map(|r| (r.id, r.created_at)).collect())
}

/// `owner`'s file `id`; another user's file is as absent as a file that never was.
#[tracing::instrument(name = "db.find_file", skip_all, fields(owner, file_id = %id))]
pub async fn find(pool: &PgPool, owner: i64, id: Uuid) -> Result<Option<FileRecord>, sqlx::Error> {
    sqlx::query_as!(
        FileRecord,
        r#"
        SELECT id, filename, content_type, size, sha256, created_at, inline, expires_at,
               upload_link_id AS upload_link, metadata
        FROM files
        WHERE id = $1 AND owner_id = $2 AND (expires_at IS NULL OR expires_at > now())
        "#,
        id,
        owner
    )
    .fetch_optional(pool)
    .await
}

/// Sets when `owner`'s file `id` goes by itself (`None`: until deleted); the file as it now is,
/// or `None` when there is no such file (or it has expired already).
#[tracing::instrument(name = "db.set_file_expiry", skip_all, fields(owner, file_id = %id))]
pub async fn set_expiry(
    pool: &PgPool,
    owner: i64,
    id: Uuid,
    expires_at: Option<OffsetDateTime>,
) -> Result<Option<FileRecord>, sqlx::Error> {
    sqlx::query_as!(
        FileRecord,
        r#"
        UPDATE files SET expires_at = $3
        WHERE id = $1 AND owner_id = $2 AND (expires_at IS NULL OR expires_at > now())
        RETURNING id, filename, content_type, size, sha256, created_at, inline, expires_at,
               upload_link_id AS upload_link, metadata
        "#,
        id,
        owner,
        expires_at
    )
    .fetch_optional(pool)
    .await
}

/// `length` bytes from `start` of inline file `id`; `None` when its row is gone.
#[tracing::instrument(name = "db.read_inline", skip_all, fields(file_id = %id))]
pub async fn read_inline(
    pool: &PgPool,
    id: Uuid,
    start: u64,
    length: u64,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    // substring() counts from 1; both bounds fit: the file is at most `storage.inline_max_bytes`.
    sqlx::query_scalar!(
        "SELECT substring(bytes FROM $2::int4 FOR $3::int4) AS \"bytes!\" FROM file_contents WHERE file_id = $1",
        id,
        start as i32 + 1,
        length as i32,
    )
    .fetch_optional(pool)
    .await
}

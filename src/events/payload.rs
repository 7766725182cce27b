//! What every sink gets, as the API document describes it (`components/schemas/Event`): the
//! bodies are written by Postgres in the transaction that makes the change (the outbox's
//! `file_json`, `announce_file_deletions`, `catalog::record::insert_all`), so these types only
//! describe them; the events tests hold each received body to this description.

use time::OffsetDateTime;
use uuid::Uuid;

/// One event: the JSON body of a webhook's `POST` and of a NATS message.
#[derive(utoipa::ToSchema)]
pub struct Event {
    /// UUID v7, the same at every attempt and in every sink: the consumer's deduplication key
    /// (`webhook-id`, `Nats-Msg-Id`).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the change was committed.
    pub timestamp: OffsetDateTime,
    pub data: EventData,
}

#[derive(utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "file.stored")]
    FileStored,
    #[serde(rename = "file.deleted")]
    FileDeleted,
    #[serde(rename = "upload.expired")]
    UploadExpired,
}

/// The event's `data`, by its `type`.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventData {
    FileStored(FileStored),
    FileDeleted(FileDeleted),
    UploadExpired(UploadExpired),
}

/// `file.stored`: a file was committed (multipart, batch, tus or IETF completion), one event
/// per file.
#[derive(utoipa::ToSchema)]
pub struct FileStored {
    pub file: EventFile,
    /// `multipart`, `tus` or `ietf`.
    pub protocol: String,
    /// The `X-Request-Id` of the request that finished the file (`null` when none).
    pub request_id: Option<Uuid>,
}

/// `file.deleted`: a file's row and bytes went (`DELETE /files/{id}`, its lifetime over, its
/// owner deleted).
#[derive(utoipa::ToSchema)]
pub struct FileDeleted {
    pub file: EventFile,
    /// `deleted`, or `expired` when its lifetime was over.
    pub reason: String,
}

/// `upload.expired`: an unfinished resumable upload was removed by the sweep.
#[derive(utoipa::ToSchema)]
pub struct UploadExpired {
    pub upload: ExpiredUpload,
}

/// A file as events show it: the file object without its `url`, with its owner.
#[derive(utoipa::ToSchema)]
pub struct EventFile {
    pub id: Uuid,
    /// The owner's user id.
    pub owner: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Lowercase hex.
    pub sha256: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub upload_link: Option<Uuid>,
    /// What the upload hook attached.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// The unfinished upload an `upload.expired` event is about.
#[derive(utoipa::ToSchema)]
pub struct ExpiredUpload {
    pub id: Uuid,
    pub owner: i64,
    pub filename: String,
    /// Its `Upload-Length`; `null` when it was never declared.
    pub length: Option<i64>,
    /// Bytes it had received.
    pub received: i64,
    /// A partial upload of tus concatenation.
    pub partial: bool,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

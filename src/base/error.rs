//! The API's error type: every failure a client can see, with its status and stable `code`.

use std::io;

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
};

use crate::base::problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body must be multipart/form-data: {0}")]
    NotMultipart(String),
    // Multipart errors are kept as text: some of them cannot cross threads.
    #[error("malformed multipart body: {0}")]
    MalformedMultipart(String),
    #[error("{0}")]
    MissingFile(&'static str),
    #[error("{0}")]
    TooManyFiles(String),
    #[error("file exceeds the {0}-byte limit")]
    FileTooLarge(u64),
    #[error("request body exceeds the {0}-byte limit")]
    RequestTooLarge(u64),
    #[error("content type `{0}` is not allowed")]
    UnsupportedMediaType(String),
    #[error("`{0}` does not match the SHA-256 its Repr-Digest declares")]
    ChecksumMismatch(String),
    #[error("this server speaks tus 1.0.0: send `Tus-Resumable: 1.0.0`")]
    TusVersion,
    #[error("a PATCH body must be `application/offset+octet-stream`")]
    NotOffsetOctetStream,
    #[error(
        "Upload-Offset is {sent} but the upload has {expected} bytes; HEAD it and resume from there"
    )]
    OffsetMismatch { sent: u64, expected: u64 },
    #[error("the upload would go beyond its Upload-Length of {0} bytes")]
    BeyondLength(u64),
    #[error("another request is writing to this upload; retry when it is done")]
    UploadLocked,
    #[error("the upload expired and its bytes were removed")]
    UploadExpired,
    #[error("the chunk does not match its Upload-Checksum; nothing of it was kept")]
    ChunkChecksumMismatch,
    #[error("the request body was idle for more than {0} s")]
    UploadTimeout(u64),
    #[error(
        "the request body was too slow: it brought less than {min_bytes_per_sec} bytes/s over {window_secs} s"
    )]
    UploadTooSlow {
        min_bytes_per_sec: u64,
        window_secs: u64,
    },
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this request needs `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is malformed, unknown, revoked or expired")]
    InvalidToken,
    #[error("the upload would go over your quota of {0} bytes")]
    QuotaExceeded(u64),
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInUse,
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream service failed")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("the object storage is unavailable")]
    StorageUnavailable(#[source] io::Error),
    #[error("the storage is full")]
    StorageFull(#[source] io::Error),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Every `code` a problem+json body can carry: the stable part of an error that clients match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotMultipart,
    MalformedMultipart,
    MissingFile,
    TooManyFiles,
    FileTooLarge,
    RequestTooLarge,
    UnsupportedMediaType,
    ChecksumMismatch,
    TusVersionUnsupported,
    NotOffsetOctetStream,
    OffsetMismatch,
    LengthExceeded,
    UploadLocked,
    UploadExpired,
    ChunkChecksumMismatch,
    UploadTimeout,
    NotFound,
    Unauthorized,
    QuotaExceeded,
    RateLimited,
    InvalidRequest,
    PaymentDeclined,
    ProviderUnavailable,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    DatabaseUnavailable,
    StorageUnavailable,
    StorageFull,
    Internal,
}

impl ErrorCode {
    pub const ALL: [Self; 29] = [
        Self::NotMultipart,
        Self::MalformedMultipart,
        Self::MissingFile,
        Self::TooManyFiles,
        Self::FileTooLarge,
        Self::RequestTooLarge,
        Self::UnsupportedMediaType,
        Self::ChecksumMismatch,
        Self::TusVersionUnsupported,
        Self::NotOffsetOctetStream,
        Self::OffsetMismatch,
        Self::LengthExceeded,
        Self::UploadLocked,
        Self::UploadExpired,
        Self::ChunkChecksumMismatch,
        Self::UploadTimeout,
        Self::NotFound,
        Self::Unauthorized,
        Self::QuotaExceeded,
        Self::RateLimited,
        Self::InvalidRequest,
        Self::PaymentDeclined,
        Self::ProviderUnavailable,
        Self::IdempotencyKeyReused,
        Self::IdempotencyKeyInUse,
        Self::DatabaseUnavailable,
        Self::StorageUnavailable,
        Self::StorageFull,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotMultipart => "not_multipart",
            Self::MalformedMultipart => "malformed_multipart",
            Self::MissingFile => "missing_file",
            Self::TooManyFiles => "too_many_files",
            Self::FileTooLarge => "file_too_large",
            Self::RequestTooLarge => "request_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::TusVersionUnsupported => "tus_version_unsupported",
            Self::NotOffsetOctetStream => "not_offset_octet_stream",
            Self::OffsetMismatch => "offset_mismatch",
            Self::LengthExceeded => "length_exceeded",
            Self::UploadLocked => "upload_locked",
            Self::UploadExpired => "upload_expired",
            Self::ChunkChecksumMismatch => "chunk_checksum_mismatch",
            Self::UploadTimeout => "upload_timeout",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::QuotaExceeded => "quota_exceeded",
            Self::RateLimited => "rate_limited",
            Self::InvalidRequest => "invalid_request",
            Self::PaymentDeclined => "payment_declined",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::StorageFull => "storage_full",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field of a request body, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ApiError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotMultipart(_) => ErrorCode::NotMultipart,
            Self::MalformedMultipart(_) => ErrorCode::MalformedMultipart,
            Self::MissingFile(_) => ErrorCode::MissingFile,
            Self::TooManyFiles(_) => ErrorCode::TooManyFiles,
            Self::FileTooLarge(_) => ErrorCode::FileTooLarge,
            Self::RequestTooLarge(_) => ErrorCode::RequestTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::ChecksumMismatch(_) => ErrorCode::ChecksumMismatch,
            Self::TusVersion => ErrorCode::TusVersionUnsupported,
            Self::NotOffsetOctetStream => ErrorCode::NotOffsetOctetStream,
            Self::OffsetMismatch { .. } => ErrorCode::OffsetMismatch,
            Self::BeyondLength(_) => ErrorCode::LengthExceeded,
            Self::UploadLocked => ErrorCode::UploadLocked,
            Self::UploadExpired => ErrorCode::UploadExpired,
            Self::ChunkChecksumMismatch => ErrorCode::ChunkChecksumMismatch,
            Self::UploadTimeout(_) | Self::UploadTooSlow { .. } | Self::BodyTimeout(_) => {
                ErrorCode::UploadTimeout
            }
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MissingToken | Self::InvalidToken => ErrorCode::Unauthorized,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::InvalidRequest(_) | Self::Validation(_) => ErrorCode::InvalidRequest,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::IdempotencyKeyInUse => ErrorCode::IdempotencyKeyInUse,
            Self::UpstreamTimeout | Self::Upstream(_) => ErrorCode::ProviderUnavailable,
            Self::DatabaseUnavailable(_) => ErrorCode::DatabaseUnavailable,
            Self::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            Self::StorageFull(_) => ErrorCode::StorageFull,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::base::db::is_unavailable(&error) {
            if matches!(error, sqlx::Error::PoolTimedOut) {
                crate::base::telemetry::metrics::pool_timed_out();
            }
            Self::DatabaseUnavailable(error)
        } else {
            Self::internal(error)
        }
    }
}

impl From<io::Error> for ApiError {
    fn from(error: io::Error) -> Self {
        // A bucket's writer records its intents in Postgres: that failure is the database's.
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<sqlx::Error>())
        {
            let inner = error.into_inner().expect("checked above");
            return Self::from(*inner.downcast::<sqlx::Error>().expect("checked above"));
        }
        // A bucket that failed to answer (after the client's retries).
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<object_store::Error>())
        {
            return Self::StorageUnavailable(error);
        }
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::StorageFull(error),
            _ => Self::internal(error),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotMultipart(_) | Self::UnsupportedMediaType(_) | Self::NotOffsetOctetStream => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::TusVersion => StatusCode::PRECONDITION_FAILED,
            Self::OffsetMismatch { .. } => StatusCode::CONFLICT,
            Self::UploadLocked => StatusCode::LOCKED,
            Self::UploadExpired => StatusCode::GONE,
            // tus's own status for a checksum mismatch.
            Self::ChunkChecksumMismatch => StatusCode::from_u16(460).expect("a valid status code"),
            Self::MalformedMultipart(_) | Self::MissingFile(_) | Self::InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooManyFiles(_)
            | Self::FileTooLarge(_)
            | Self::RequestTooLarge(_)
            | Self::BeyondLength(_)
            | Self::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UploadTimeout(_) | Self::UploadTooSlow { .. } | Self::BodyTimeout(_) => {
                StatusCode::REQUEST_TIMEOUT
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Validation(_) | Self::IdempotencyKeyReused | Self::ChecksumMismatch(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::IdempotencyKeyInUse => StatusCode::CONFLICT,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::DatabaseUnavailable(_) | Self::StorageUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let chain = problem::cause_chain(self);
        if status.is_server_error() {
            tracing::error!(code = self.code().as_str(), error = %chain, "request failed");
        } else {
            tracing::info!(code = self.code().as_str(), error = %chain, "request rejected");
        }
        // Server-side causes stay in the log; the client gets the status's generic wording.
        let detail = if status.is_server_error() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            self.to_string()
        };
        let mut body = problem::body(status, self.code(), &detail);
        if let Self::Validation(errors) = self {
            body.insert(
                "errors".into(),
                serde_json::to_value(errors).expect("field errors serialize"),
            );
        }
        let mut response = problem::respond(status, body);
        crate::base::telemetry::metrics::tag(&mut response, self.code());
        let headers = response.headers_mut();
        match self {
            Self::DatabaseUnavailable(_) | Self::StorageUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            Self::TusVersion => {
                headers.insert(
                    header::HeaderName::from_static("tus-version"),
                    HeaderValue::from_static(crate::api::tus::VERSION),
                );
            }
            Self::UploadLocked => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 6750: a request without credentials gets no error code.
            Self::MissingToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="intake""#),
                );
            }
            Self::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="intake", error="invalid_token""#),
                );
            }
            _ => {}
        }
        response
    }
}

/// The codes as the API document lists them: exactly `ALL`.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::ALL.iter().map(|code| code.as_str())))
            .description(Some("The stable part of an error, that clients match on"))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// The error table of docs/api.md is what clients code against: it lists every code, once.
    #[test]
    fn the_api_document_lists_every_error_code() {
        let doc = include_str!("../../docs/api.md");
        let listed: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once("` | "))
            .map(|(code, _)| code)
            .filter(|code| !code.contains(' ') && !code.contains('/'))
            .collect();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed, codes);
    }
}

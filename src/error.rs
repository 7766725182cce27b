//! The API's error type: every failure a client can see, with its status and stable `code`.

use std::io;

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
};

use crate::problem;

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
    #[error("the storage is full")]
    StorageFull(#[source] io::Error),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One invalid field of a request body, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

    pub fn code(&self) -> &'static str {
        match self {
            Self::NotMultipart(_) => "not_multipart",
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::MissingFile(_) => "missing_file",
            Self::TooManyFiles(_) => "too_many_files",
            Self::FileTooLarge(_) => "file_too_large",
            Self::RequestTooLarge(_) => "request_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UploadTimeout(_) | Self::UploadTooSlow { .. } | Self::BodyTimeout(_) => {
                "upload_timeout"
            }
            Self::NotFound(_) => "not_found",
            Self::MissingToken | Self::InvalidToken => "unauthorized",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::RateLimited(_) => "rate_limited",
            Self::InvalidRequest(_) | Self::Validation(_) => "invalid_request",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::UpstreamTimeout | Self::Upstream(_) => "provider_unavailable",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::StorageFull(_) => "storage_full",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            Self::DatabaseUnavailable(error)
        } else {
            Self::internal(error)
        }
    }
}

impl From<io::Error> for ApiError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::StorageFull(error),
            _ => Self::internal(error),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotMultipart(_) | Self::UnsupportedMediaType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::MalformedMultipart(_) | Self::MissingFile(_) | Self::InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooManyFiles(_)
            | Self::FileTooLarge(_)
            | Self::RequestTooLarge(_)
            | Self::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UploadTimeout(_) | Self::UploadTooSlow { .. } | Self::BodyTimeout(_) => {
                StatusCode::REQUEST_TIMEOUT
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyInUse => StatusCode::CONFLICT,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let chain = problem::cause_chain(self);
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %chain, "request failed");
        } else {
            tracing::info!(code = self.code(), error = %chain, "request rejected");
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
        let headers = response.headers_mut();
        match self {
            Self::DatabaseUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
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

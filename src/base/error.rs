//! The API's error type: every failure a client can see, with its status and stable `code`.

use std::io;

use actix_web::{
    HttpResponse, ResponseError,
    body::{BoxBody, EitherBody, MessageBody},
    dev::ServiceResponse,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    middleware::ErrorHandlerResponse,
};
use serde_json::{Map, Value};

use super::{
    error_code::{ErrorCode, FieldError},
    problem, telemetry,
};

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
    /// The version this server speaks, named in `Tus-Version`.
    #[error("this server speaks tus {0}: send `Tus-Resumable: {0}`")]
    TusVersion(&'static str),
    #[error("a PATCH body must be `application/offset+octet-stream`")]
    NotOffsetOctetStream,
    #[error("a PATCH body must be `application/partial-upload`")]
    NotPartialUpload,
    #[error(
        "Upload-Offset is {sent} but the upload has {expected} bytes; HEAD it and resume from there"
    )]
    OffsetMismatch { sent: u64, expected: u64 },
    #[error("the upload would go beyond its Upload-Length of {0} bytes")]
    BeyondLength(u64),
    /// Two lengths of one upload that differ: declared twice, or declared and then not sent.
    #[error("{0}")]
    InconsistentLength(String),
    #[error("another request is writing to this upload; retry when it is done")]
    UploadLocked,
    #[error("the upload expired and its bytes were removed")]
    UploadExpired,
    #[error("this link expired")]
    LinkExpired,
    /// The link's `max_downloads`.
    #[error("this share link has been downloaded the {0} times it allows")]
    LinkUsedUp(i32),
    /// The upload link's `max_files`.
    #[error("this upload link takes no more files (it allows {0})")]
    LinkFull(i32),
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
    /// The file's size.
    #[error("the requested range is outside the file")]
    RangeNotSatisfiable(u64),
    #[error("this request needs `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is malformed, unknown, revoked or expired")]
    InvalidToken,
    #[error(
        "auth is off: only requests to localhost are served, not to `{0}`; turn auth on or list the host in server.allowed_hosts"
    )]
    HostNotAllowed(String),
    /// A preflight refused by `http.cors`, in its words.
    #[error("cross-origin request refused: {0}")]
    CorsRefused(String),
    /// The upload hook's reason (`events.pre_upload`).
    #[error("{0}")]
    UploadRefused(String),
    #[error("the upload hook could not be asked; retry later")]
    UploadHookUnavailable,
    #[error("the upload would go over your quota of {0} bytes")]
    QuotaExceeded(u64),
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    #[error("you have {0} uploads in flight, the most at once; send this one when one has ended")]
    TooManyUploads(usize),
    #[error(
        "you hold {max} unfinished uploads, the most you may: finish or terminate (DELETE) one, or retry once one has expired"
    )]
    TooManyUnfinished { max: u64, retry_after: u64 },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInUse,
    #[error("the payment was declined")]
    PaymentDeclined,
    #[error("the payment provider failed")]
    PaymentFailed,
    #[error("the payment provider did not answer in time")]
    PaymentTimedOut,
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
    /// A refusal of the framework's own (no route, a wrong method), by its status.
    #[error("{}", refused_detail(*.0))]
    Refused(StatusCode),
}

impl ApiError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    pub fn code(&self) -> ErrorCode {
        self.kind().0
    }

    /// The one table of what each error is to a client: its code and its status.
    fn kind(&self) -> (ErrorCode, StatusCode) {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            Self::NotMultipart(_) => (C::NotMultipart, S::UNSUPPORTED_MEDIA_TYPE),
            Self::MalformedMultipart(_) => (C::MalformedMultipart, S::BAD_REQUEST),
            Self::MissingFile(_) => (C::MissingFile, S::BAD_REQUEST),
            Self::TooManyFiles(_) => (C::TooManyFiles, S::PAYLOAD_TOO_LARGE),
            Self::FileTooLarge(_) => (C::FileTooLarge, S::PAYLOAD_TOO_LARGE),
            Self::RequestTooLarge(_) => (C::RequestTooLarge, S::PAYLOAD_TOO_LARGE),
            Self::UnsupportedMediaType(_) => (C::UnsupportedMediaType, S::UNSUPPORTED_MEDIA_TYPE),
            Self::ChecksumMismatch(_) => (C::ChecksumMismatch, S::UNPROCESSABLE_ENTITY),
            Self::TusVersion(_) => (C::TusVersionUnsupported, S::PRECONDITION_FAILED),
            Self::NotOffsetOctetStream => (C::NotOffsetOctetStream, S::UNSUPPORTED_MEDIA_TYPE),
            Self::NotPartialUpload => (C::NotPartialUpload, S::UNSUPPORTED_MEDIA_TYPE),
            Self::OffsetMismatch { .. } => (C::OffsetMismatch, S::CONFLICT),
            Self::InconsistentLength(_) => (C::InvalidRequest, S::BAD_REQUEST),
            Self::BeyondLength(_) => (C::LengthExceeded, S::PAYLOAD_TOO_LARGE),
            Self::UploadLocked => (C::UploadLocked, S::LOCKED),
            Self::UploadExpired => (C::UploadExpired, S::GONE),
            Self::LinkExpired => (C::LinkExpired, S::GONE),
            Self::LinkUsedUp(_) | Self::LinkFull(_) => (C::LinkUsedUp, S::GONE),
            // tus's own status for a checksum mismatch.
            Self::ChunkChecksumMismatch => (
                C::ChunkChecksumMismatch,
                S::from_u16(460).expect("a valid status code"),
            ),
            Self::UploadTimeout(_) | Self::UploadTooSlow { .. } | Self::BodyTimeout(_) => {
                (C::UploadTimeout, S::REQUEST_TIMEOUT)
            }
            Self::NotFound(_) => (C::NotFound, S::NOT_FOUND),
            Self::RangeNotSatisfiable(_) => (C::InvalidRequest, S::RANGE_NOT_SATISFIABLE),
            Self::MissingToken | Self::InvalidToken => (C::Unauthorized, S::UNAUTHORIZED),
            Self::HostNotAllowed(_) => (C::HostNotAllowed, S::FORBIDDEN),
            Self::CorsRefused(_) => (C::CorsRefused, S::FORBIDDEN),
            Self::UploadRefused(_) => (C::UploadRefused, S::FORBIDDEN),
            Self::UploadHookUnavailable => (C::UploadHookUnavailable, S::SERVICE_UNAVAILABLE),
            Self::QuotaExceeded(_) => (C::QuotaExceeded, S::PAYLOAD_TOO_LARGE),
            Self::RateLimited(_) => (C::RateLimited, S::TOO_MANY_REQUESTS),
            Self::TooManyUploads(_) => (C::TooManyUploads, S::TOO_MANY_REQUESTS),
            Self::TooManyUnfinished { .. } => (C::TooManyUnfinishedUploads, S::TOO_MANY_REQUESTS),
            Self::InvalidRequest(_) => (C::InvalidRequest, S::BAD_REQUEST),
            Self::Validation(_) => (C::InvalidRequest, S::UNPROCESSABLE_ENTITY),
            Self::IdempotencyKeyReused => (C::IdempotencyKeyReused, S::UNPROCESSABLE_ENTITY),
            Self::IdempotencyKeyInUse => (C::IdempotencyKeyInUse, S::CONFLICT),
            Self::PaymentDeclined => (C::PaymentDeclined, S::PAYMENT_REQUIRED),
            Self::PaymentFailed => (C::ProviderUnavailable, S::BAD_GATEWAY),
            Self::PaymentTimedOut => (C::ProviderUnavailable, S::GATEWAY_TIMEOUT),
            Self::UpstreamTimeout => (C::ProviderUnavailable, S::GATEWAY_TIMEOUT),
            Self::Upstream(_) => (C::ProviderUnavailable, S::BAD_GATEWAY),
            Self::DatabaseUnavailable(_) => (C::DatabaseUnavailable, S::SERVICE_UNAVAILABLE),
            Self::StorageUnavailable(_) => (C::StorageUnavailable, S::SERVICE_UNAVAILABLE),
            Self::StorageFull(_) => (C::StorageFull, S::INSUFFICIENT_STORAGE),
            Self::Internal(_) => (C::Internal, S::INTERNAL_SERVER_ERROR),
            Self::Refused(status) => (refused_code(*status), *status),
        }
    }

    /// The problem+json body clients get, and its status. Server-side causes stay in the log;
    /// the client gets the status's generic wording.
    pub fn problem(&self) -> (StatusCode, Map<String, Value>) {
        let (code, status) = self.kind();
        let detail = if status.is_server_error() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            self.to_string()
        };
        let mut body = problem::body(status, code, &detail);
        if let Self::Validation(errors) = self {
            body.insert(
                "errors".into(),
                serde_json::to_value(errors).expect("field errors serialize"),
            );
        }
        (status, body)
    }
}

/// The code of a status the framework answered with (an unknown route, a wrong method, a body
/// over an extractor's limit).
fn refused_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::RequestTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::UploadTimeout,
        status if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    }
}

/// What the framework's refusals say.
fn refused_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this resource",
        StatusCode::PAYLOAD_TOO_LARGE => "request is too large",
        StatusCode::REQUEST_TIMEOUT => "request took too long",
        _ => "the request could not be processed",
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::base::db::is_unavailable(&error) {
            if matches!(error, sqlx::Error::PoolTimedOut) {
                telemetry::metrics::pool_timed_out();
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
        self.kind().1
    }

    fn error_response(&self) -> HttpResponse {
        self.response_with(|_| {})
    }
}

impl ApiError {
    /// The error's answer, its problem amended first: a protocol that defines problem types
    /// and members of its own (the IETF resumable-upload draft) adds them here.
    pub fn response_with(&self, amend: impl FnOnce(&mut Map<String, Value>)) -> HttpResponse {
        let (status, mut body) = self.problem();
        amend(&mut body);
        let code = self.code();
        let chain = telemetry::cause_chain(self);
        if status.is_server_error() {
            tracing::error!(code = code.as_str(), error = %chain, "request failed");
        } else {
            tracing::info!(code = code.as_str(), error = %chain, "request rejected");
        }
        let mut response = problem::respond(status, body);
        problem::tag(&mut response, code);
        let headers = response.headers_mut();
        match self {
            Self::DatabaseUnavailable(_)
            | Self::StorageUnavailable(_)
            | Self::UploadHookUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::RateLimited(seconds)
            | Self::TooManyUnfinished {
                retry_after: seconds,
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            Self::TusVersion(version) => {
                headers.insert(
                    header::HeaderName::from_static("tus-version"),
                    HeaderValue::from_static(version),
                );
            }
            Self::UploadLocked | Self::TooManyUploads(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RangeNotSatisfiable(size) => {
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}"))
                        .expect("a number is a valid header value"),
                );
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

/// Turns error responses that do not come from our own error types (unknown routes, wrong
/// methods, framework rejections) into problem+json, so clients see one error format.
pub fn render_framework_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == problem::CONTENT_TYPE.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, old) = res.into_parts();
    let mut new = ApiError::Refused(old.status()).error_response();
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<EitherBody<B, BoxBody>> =
        ServiceResponse::new(req, new).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

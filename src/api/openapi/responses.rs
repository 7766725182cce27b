//! Error answers many operations share, described once. Each is an `application/problem+json`
//! body whose `code` says which error it is (docs/api.md).

use utoipa::IntoResponses;

use crate::base::problem::Problem;

/// What any route behind a token may answer besides its own outcomes.
#[derive(IntoResponses)]
pub enum Authenticated {
    #[response(
        status = 401,
        description = "`unauthorized`: no token, or one that is unknown, revoked or expired",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 429,
        description = "`rate_limited`: too many requests; on uploads also `too_many_uploads` (the caller's uploads in flight) or, creating a resumable upload, `too_many_unfinished_uploads`. `Retry-After` says when to retry",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    RateLimited(Problem),
    #[response(
        status = 503,
        description = "`database_unavailable` or `storage_unavailable`; `Retry-After` says when \
                       to retry",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    Unavailable(Problem),
}

/// Routes limited by client address (no token needed).
#[derive(IntoResponses)]
pub enum Limited {
    #[response(
        status = 429,
        description = "`rate_limited`: too many requests from this address",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "seconds to wait"))
    )]
    RateLimited(Problem),
}

/// A path or query parameter that names nothing or is not valid.
#[derive(IntoResponses)]
pub enum NotFound {
    #[response(
        status = 404,
        description = "`not_found`: no such resource for this caller (another user's is as \
                       absent as one that never was)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
}

/// How an upload's body can be refused; nothing of a refused upload is kept.
#[derive(IntoResponses)]
pub enum UploadRefused {
    #[response(
        status = 400,
        description = "`malformed_multipart`, `missing_file` or `invalid_request`",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 408,
        description = "`upload_timeout`: the body stalled (`upload.idle_timeout_secs`) or came \
                       slower than `upload.min_bytes_per_sec`",
        content_type = "application/problem+json"
    )]
    Timeout(Problem),
    #[response(
        status = 413,
        description = "`file_too_large`, `request_too_large`, `too_many_files` or \
                       `quota_exceeded`",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "`not_multipart` or `unsupported_media_type` (a type outside \
                       `upload.allowed_content_types`)",
        content_type = "application/problem+json"
    )]
    Unsupported(Problem),
    #[response(
        status = 422,
        description = "`checksum_mismatch`: a part's declared SHA-256 does not match its bytes; \
                       `invalid_request`: the `expires_in` field is not a lifetime within \
                       `upload.max_lifetime_secs`, or appears twice",
        content_type = "application/problem+json"
    )]
    Checksum(Problem),
    #[response(
        status = 507,
        description = "`storage_full`: no room left in the storage",
        content_type = "application/problem+json"
    )]
    StorageFull(Problem),
}

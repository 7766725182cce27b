//! The stable part of every error: the `code` a problem+json body carries and clients match on,
//! and the field errors of an invalid request. A leaf: it imports nothing of the crate.

/// Writes the codes once: each variant with its text, and `ALL` in the order docs/api.md lists
/// them.
macro_rules! codes {
    ($($variant:ident = $text:literal,)+) => {
        /// Every `code` a problem+json body can carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

codes! {
    NotMultipart = "not_multipart",
    MalformedMultipart = "malformed_multipart",
    MissingFile = "missing_file",
    TooManyFiles = "too_many_files",
    FileTooLarge = "file_too_large",
    RequestTooLarge = "request_too_large",
    UnsupportedMediaType = "unsupported_media_type",
    ChecksumMismatch = "checksum_mismatch",
    TusVersionUnsupported = "tus_version_unsupported",
    NotOffsetOctetStream = "not_offset_octet_stream",
    NotPartialUpload = "not_partial_upload",
    OffsetMismatch = "offset_mismatch",
    LengthExceeded = "length_exceeded",
    UploadLocked = "upload_locked",
    UploadExpired = "upload_expired",
    LinkExpired = "link_expired",
    LinkUsedUp = "link_used_up",
    ChunkChecksumMismatch = "chunk_checksum_mismatch",
    UploadTimeout = "upload_timeout",
    NotFound = "not_found",
    Unauthorized = "unauthorized",
    HostNotAllowed = "host_not_allowed",
    CorsRefused = "cors_refused",
    UploadRefused = "upload_refused",
    QuotaExceeded = "quota_exceeded",
    RateLimited = "rate_limited",
    TooManyUploads = "too_many_uploads",
    TooManyUnfinishedUploads = "too_many_unfinished_uploads",
    InvalidRequest = "invalid_request",
    PaymentDeclined = "payment_declined",
    ProviderUnavailable = "provider_unavailable",
    UploadHookUnavailable = "upload_hook_unavailable",
    IdempotencyKeyReused = "idempotency_key_reused",
    IdempotencyKeyInUse = "idempotency_key_in_use",
    DatabaseUnavailable = "database_unavailable",
    StorageUnavailable = "storage_unavailable",
    StorageFull = "storage_full",
    Internal = "internal",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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

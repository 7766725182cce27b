//! The fields of the IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload,
//! interop version 8): reading the client's, writing ours.

use actix_web::{
    HttpResponse,
    http::header::{HeaderMap, HeaderName, HeaderValue},
};
use serde_json::Value;

use super::super::fields::{UPLOAD_OFFSET, is_media_type};
use crate::base::error::ApiError;

/// The interop version of the draft this server implements (drafts -09 to -15 share it).
pub const INTEROP_VERSION: u64 = 8;
/// The interop versions whose requests are those of version 8: the versions between changed
/// what servers answer, not what clients send (tus-js-client's `ietf-draft-05` sends 6).
const ACCEPTED_VERSIONS: std::ops::RangeInclusive<u64> = 6..=INTEROP_VERSION;
pub const PARTIAL_UPLOAD: &str = "application/partial-upload";

pub const UPLOAD_COMPLETE: HeaderName = HeaderName::from_static("upload-complete");
pub const UPLOAD_LIMIT: HeaderName = HeaderName::from_static("upload-limit");
pub const UPLOAD_DRAFT_INTEROP_VERSION: HeaderName =
    HeaderName::from_static("upload-draft-interop-version");

/// The problem types the draft defines (its section "Problem Types").
const MISMATCHING_OFFSET: &str =
    "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const INCONSISTENT_LENGTH: &str =
    "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";

/// A client of a draft names its interop version; one this server does not speak is refused
/// (a client of the final RFC names none).
pub fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(UPLOAD_DRAFT_INTEROP_VERSION) else {
        return Ok(());
    };
    let version = value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok());
    match version {
        Some(version) if ACCEPTED_VERSIONS.contains(&version) => Ok(()),
        _ => Err(ApiError::InvalidRequest(format!(
            "this server implements interop version {INTEROP_VERSION} of the resumable-upload \
             draft (and accepts {}–{INTEROP_VERSION}, whose requests are alike): send \
             `Upload-Draft-Interop-Version: {INTEROP_VERSION}`",
            ACCEPTED_VERSIONS.start()
        ))),
    }
}

/// `Upload-Complete`, a structured Boolean (`?1` or `?0`, parameters ignored); any other value
/// is as if the field were absent, as the draft says.
pub fn complete(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(UPLOAD_COMPLETE)?.to_str().ok()?;
    match value.split(';').next()?.trim() {
        "?1" => Some(true),
        "?0" => Some(false),
        _ => None,
    }
}

/// `Upload-Complete`, which every creation and append must carry.
pub fn required_complete(headers: &HeaderMap) -> Result<bool, ApiError> {
    complete(headers).ok_or_else(|| {
        ApiError::InvalidRequest(
            "a resumable upload (draft-ietf-httpbis-resumable-upload) needs `Upload-Complete: ?1` \
             when this request brings the whole file, or `?0` when more is to come"
                .into(),
        )
    })
}

pub fn is_partial_upload(headers: &HeaderMap) -> bool {
    is_media_type(headers, PARTIAL_UPLOAD)
}

pub fn boolean(value: bool) -> HeaderValue {
    HeaderValue::from_static(if value { "?1" } else { "?0" })
}

/// `Upload-Limit`: the largest file, and (for an upload) the seconds it has left.
pub fn limit(max_size: u64, max_age: Option<i64>) -> String {
    match max_age {
        Some(age) => format!("max-size={max_size}, max-age={}", age.max(0)),
        None => format!("max-size={max_size}"),
    }
}

/// An error answered as the draft asks: `Upload-Complete: ?0` (the upload, if there is one, is
/// as it was and may go on), the correct offset with a mismatching one, the limits with a
/// `413`, and the draft's problem types (with their members) where it defines one.
pub fn refusal(error: &ApiError, limit: &str) -> HttpResponse {
    let kind = match error {
        ApiError::OffsetMismatch { .. } => Some(MISMATCHING_OFFSET),
        ApiError::InconsistentLength(_) => Some(INCONSISTENT_LENGTH),
        _ => None,
    };
    let mut response = error.response_with(|body| {
        if let Some(kind) = kind {
            body.insert("type".into(), Value::from(kind));
        }
        if let ApiError::OffsetMismatch { sent, expected } = error {
            body.insert("expected-offset".into(), Value::from(*expected));
            body.insert("provided-offset".into(), Value::from(*sent));
        }
    });
    let too_large = response.status() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE;
    let headers = response.headers_mut();
    headers.insert(UPLOAD_COMPLETE, boolean(false));
    if let ApiError::OffsetMismatch { expected, .. } = error {
        headers.insert(UPLOAD_OFFSET, HeaderValue::from(*expected));
    }
    if too_large {
        let limit = HeaderValue::from_str(limit).expect("a limit is a header value");
        headers.insert(UPLOAD_LIMIT, limit);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn upload_complete_is_a_structured_boolean() {
        assert_eq!(complete(&with(UPLOAD_COMPLETE, "?1")), Some(true));
        assert_eq!(complete(&with(UPLOAD_COMPLETE, "?0;a=b")), Some(false));
        for ignored in ["1", "true", "?2", "", "?1?0"] {
            assert_eq!(
                complete(&with(UPLOAD_COMPLETE, ignored)),
                None,
                "{ignored:?}"
            );
        }
        assert_eq!(complete(&HeaderMap::new()), None);
    }

    #[test]
    fn interop_versions_six_to_eight_are_spoken() {
        assert!(check_version(&HeaderMap::new()).is_ok());
        for spoken in ["6", "7", "8"] {
            assert!(check_version(&with(UPLOAD_DRAFT_INTEROP_VERSION, spoken)).is_ok());
        }
        for other in ["5", "9", "x", ""] {
            assert!(check_version(&with(UPLOAD_DRAFT_INTEROP_VERSION, other)).is_err());
        }
    }

    #[test]
    fn limits_never_go_negative() {
        assert_eq!(limit(10, None), "max-size=10");
        assert_eq!(limit(10, Some(-3)), "max-size=10, max-age=0");
    }
}

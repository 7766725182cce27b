//! The headers of tus 1.0: reading the client's, writing ours.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use time::{OffsetDateTime, format_description::well_known::Rfc2822};

use super::super::{
    checksum::Checksum,
    fields::{UPLOAD_LENGTH, is_media_type, number},
};
use crate::base::error::ApiError;

pub const VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration";

/// `Tus-Extension`: concatenation only where the storage can do it.
pub fn extensions(storage: &crate::storage::Storage) -> String {
    match storage.concatenates() {
        true => format!("{EXTENSIONS},concatenation"),
        false => EXTENSIONS.to_owned(),
    }
}
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");

/// Every request but OPTIONS must say it speaks our version.
pub fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE) {
        Some(value) if value == VERSION => Ok(()),
        _ => Err(ApiError::TusVersion(VERSION)),
    }
}

/// The length a creation declares: `Upload-Length`, or `None` with `Upload-Defer-Length: 1`.
pub fn creation_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let length = number(headers, &UPLOAD_LENGTH)?;
    let deferred = headers.get(UPLOAD_DEFER_LENGTH);
    match (length, deferred) {
        (Some(length), None) => Ok(Some(length)),
        (None, Some(value)) if value == "1" => Ok(None),
        (None, Some(_)) => Err(ApiError::InvalidRequest(
            "`Upload-Defer-Length` may only be `1`".into(),
        )),
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest(
            "send `Upload-Length` or `Upload-Defer-Length`, not both".into(),
        )),
        (None, None) => Err(ApiError::InvalidRequest(
            "a creation needs `Upload-Length` (or `Upload-Defer-Length: 1`)".into(),
        )),
    }
}

pub fn is_offset_octet_stream(headers: &HeaderMap) -> bool {
    is_media_type(headers, OFFSET_OCTET_STREAM)
}

pub fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(value) = headers.get(UPLOAD_CHECKSUM) else {
        return Ok(None);
    };
    let invalid = |why: &str| ApiError::InvalidRequest(format!("`Upload-Checksum`: {why}"));
    let text = value.to_str().map_err(|_| invalid("not ASCII"))?;
    let (algorithm, encoded) = text
        .split_once(' ')
        .ok_or_else(|| invalid("expected `<algorithm> <base64 digest>`"))?;
    let expected = STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("the digest is not base64"))?;
    let checksum = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => Checksum::Sha1(Sha1::new(), expected),
        "sha256" => Checksum::Sha256(Sha256::new(), expected),
        other => {
            return Err(invalid(&format!(
                "`{other}` is not supported; use one of {CHECKSUM_ALGORITHMS}"
            )));
        }
    };
    Ok(Some(checksum))
}

/// `Upload-Expires` is an HTTP date (RFC 9110: IMF-fixdate, always GMT).
pub fn http_date(at: OffsetDateTime) -> String {
    let text = at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .expect("a time in range formats");
    // RFC 2822 writes the zone as +0000; an HTTP date says GMT.
    text.replace(" +0000", " GMT")
}

/// Middleware for every tus route: each answer, errors included, says which version it speaks.
pub async fn tag(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_an_http_date() {
        let at = OffsetDateTime::from_unix_timestamp(1_445_412_480).unwrap();
        assert_eq!(http_date(at), "Wed, 21 Oct 2015 07:28:00 GMT");
    }
}

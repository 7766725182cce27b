//! The headers of tus 1.0: reading the client's, writing ours.

use actix_web::{
    HttpResponseBuilder,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc2822};

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
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
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

/// A header holding a non-negative integer; anything else in it is a bad request.
pub fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidRequest(format!("`{name}` must be a non-negative integer")))
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
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs (a value may be absent).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// As the client sent it, to give back on HEAD.
    pub raw: Option<String>,
    pub filename: Option<String>,
    pub filetype: Option<String>,
}

/// Headers are small, but a row should not hold a megabyte of someone's metadata.
const MAX_METADATA_BYTES: usize = 4096;

pub fn metadata(headers: &HeaderMap) -> Result<Metadata, ApiError> {
    let Some(value) = headers.get(UPLOAD_METADATA) else {
        return Ok(Metadata::default());
    };
    let invalid = |why: &str| ApiError::InvalidRequest(format!("`Upload-Metadata`: {why}"));
    let raw = value.to_str().map_err(|_| invalid("not ASCII"))?;
    if raw.len() > MAX_METADATA_BYTES {
        return Err(invalid(&format!("longer than {MAX_METADATA_BYTES} bytes")));
    }
    let mut metadata = Metadata {
        raw: Some(raw.to_owned()),
        ..Metadata::default()
    };
    let mut keys = Vec::new();
    for pair in raw
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let mut parts = pair.split(' ');
        let key = parts.next().unwrap_or_default();
        let encoded = parts.next();
        if parts.next().is_some() {
            return Err(invalid(&format!("`{key}` has more than one value")));
        }
        if keys.contains(&key) {
            return Err(invalid(&format!("`{key}` appears twice")));
        }
        keys.push(key);
        let value = encoded
            .map(|encoded| STANDARD.decode(encoded))
            .transpose()
            .map_err(|_| invalid(&format!("the value of `{key}` is not base64")))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        match key {
            "filename" => metadata.filename = value,
            "filetype" => metadata.filetype = value,
            _ => {}
        }
    }
    Ok(metadata)
}

/// `Upload-Checksum: <algorithm> <base64 digest>` of one PATCH's body.
pub enum Checksum {
    Sha1(Sha1, Vec<u8>),
    Sha256(Sha256, Vec<u8>),
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

impl Checksum {
    /// Hashes a batch on the blocking pool: a chunk may be many megabytes.
    pub async fn update(self, batch: Vec<Bytes>) -> Result<Self, ApiError> {
        tokio::task::spawn_blocking(move || match self {
            Self::Sha1(mut hasher, expected) => {
                batch.iter().for_each(|chunk| hasher.update(chunk));
                Self::Sha1(hasher, expected)
            }
            Self::Sha256(mut hasher, expected) => {
                batch.iter().for_each(|chunk| hasher.update(chunk));
                Self::Sha256(hasher, expected)
            }
        })
        .await
        .map_err(ApiError::internal)
    }

    pub fn matches(self) -> bool {
        match self {
            Self::Sha1(hasher, expected) => hasher.finalize().as_slice() == expected,
            Self::Sha256(hasher, expected) => hasher.finalize().as_slice() == expected,
        }
    }
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

/// What every answer about an upload carries: it changes with every PATCH.
pub fn resumable(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store"))
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

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn metadata_gives_filename_and_filetype_and_refuses_garbage() {
        let parsed = metadata(&headers(&[(
            &UPLOAD_METADATA,
            "filename cmVwb3J0LnBkZg==,filetype YXBwbGljYXRpb24vcGRm,is_confidential",
        )]))
        .unwrap();
        assert_eq!(parsed.filename.as_deref(), Some("report.pdf"));
        assert_eq!(parsed.filetype.as_deref(), Some("application/pdf"));
        for bad in ["filename !!!", "a YQ==,a YQ==", "a YQ== YQ=="] {
            assert!(
                metadata(&headers(&[(&UPLOAD_METADATA, bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_are_plain_digits() {
        assert_eq!(
            number(&headers(&[(&UPLOAD_OFFSET, "42")]), &UPLOAD_OFFSET).unwrap(),
            Some(42)
        );
        for bad in ["-1", "+1", "1.0", " 1", "", "99999999999999999999999"] {
            assert!(
                number(&headers(&[(&UPLOAD_OFFSET, bad)]), &UPLOAD_OFFSET).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expiry_is_an_http_date() {
        let at = OffsetDateTime::from_unix_timestamp(1_445_412_480).unwrap();
        assert_eq!(http_date(at), "Wed, 21 Oct 2015 07:28:00 GMT");
    }
}

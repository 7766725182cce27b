//! The headers both protocols share: tus 1.0 and the IETF draft name the offset and the length
//! alike, and tus clients that speak the draft still send their `Upload-Metadata`.

use actix_web::{
    HttpResponse, HttpResponseBuilder,
    http::header::{self, HeaderMap, HeaderName, HeaderValue},
};
use base64::{Engine, engine::general_purpose::STANDARD};

use crate::base::{configuration::UploadSettings, error::ApiError};

pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");

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

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs (a value may be absent).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// As the client sent it, to give back on HEAD.
    pub raw: Option<String>,
    pub filename: Option<String>,
    pub filetype: Option<String>,
    /// How long the file is to live once whole (`7d`).
    pub expires_in: Option<String>,
    /// Every pair, decoded (a key without a value: `null`), for the upload hook.
    pub pairs: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// The seconds the file is to live from its commit, as `expires_in` asks (absent:
    /// `upload.default_lifetime_secs`, or the bound); `None`: until deleted.
    pub fn lifetime(&self, upload: &UploadSettings) -> Result<Option<i64>, ApiError> {
        crate::api::lifetimes::of_upload(self.expires_in.as_deref(), upload).map_err(|error| {
            ApiError::InvalidRequest(format!("`Upload-Metadata`: `expires_in` {}", error.message))
        })
    }
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
        metadata.pairs.insert(key.to_owned(), value.clone().into());
        match key {
            "filename" => metadata.filename = value,
            "filetype" => metadata.filetype = value,
            "expires_in" => metadata.expires_in = value,
            _ => {}
        }
    }
    Ok(metadata)
}

/// What every answer about an upload carries: it changes with every PATCH.
pub fn no_store(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store"))
}

/// The media type of a request's content, without its parameters.
pub fn essence(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim())
}

/// Whether a request's content is of this media type (whatever its parameters).
pub fn is_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    essence(headers).is_some_and(|essence| essence.eq_ignore_ascii_case(media_type))
}

/// A refusal of the first bytes of an upload that was created all the same: it says where the
/// upload is, so that the client can resume or cancel it instead of leaving it to expire.
pub fn located(mut refusal: HttpResponse, location: &str) -> HttpResponse {
    let location = HeaderValue::from_str(location).expect("a path is a header value");
    refusal.headers_mut().insert(header::LOCATION, location);
    refusal
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
    fn a_media_type_is_its_essence_whatever_its_parameters() {
        let typed = headers(&[(&header::CONTENT_TYPE, "Application/Partial-Upload ; a=b")]);
        assert_eq!(essence(&typed), Some("Application/Partial-Upload"));
        assert!(is_media_type(&typed, "application/partial-upload"));
        assert!(!is_media_type(&typed, "application/offset+octet-stream"));
        assert!(!is_media_type(
            &HeaderMap::new(),
            "application/partial-upload"
        ));
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
}

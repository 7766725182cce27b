//! A file part's declared digest: RFC 9530's `Repr-Digest` field, sent as a header of the part
//! (`Repr-Digest: sha-256=:<base64>:`). The standard integrity field of HTTP, in its structured
//! form, and what a part's bytes are: its representation (a part has no content coding). Only
//! `sha-256` is checked, the digest intake computes anyway; other algorithms are ignored, as the
//! RFC lets a recipient do.

use actix_web::http::header::HeaderMap;
use base64::{Engine, engine::general_purpose::STANDARD};

use crate::base::error::ApiError;

pub const HEADER: &str = "repr-digest";

/// The SHA-256 the part declares, if it declares one.
pub fn declared_sha256(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::InvalidRequest(
            "a part's Repr-Digest must be a dictionary such as `sha-256=:<base64>:` (RFC 9530)"
                .into(),
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    for member in text.split(',') {
        let (key, rest) = member.trim().split_once('=').ok_or_else(malformed)?;
        // Parameters (`;…`) qualify a member without changing its value.
        let value = rest.split(';').next().unwrap_or_default();
        let bytes = value
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .ok_or_else(malformed)?;
        if key.eq_ignore_ascii_case("sha-256") {
            let digest = STANDARD.decode(bytes).map_err(|_| malformed())?;
            return digest.try_into().map(Some).map_err(|_| malformed());
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static(HEADER),
            HeaderValue::from_str(value).unwrap(),
        );
        map
    }

    /// SHA-256 of `hello world\n`, in base64.
    const HELLO: &str = "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=";

    #[test]
    fn sha_256_is_read_among_other_members_and_parameters() {
        let expected: [u8; 32] = STANDARD.decode(HELLO).unwrap().try_into().unwrap();
        for value in [
            format!("sha-256=:{HELLO}:"),
            format!("sha-512=:AAAA:, SHA-256=:{HELLO}:"),
            format!("sha-256=:{HELLO}:;note=1"),
        ] {
            assert_eq!(
                declared_sha256(&headers(&value)).unwrap(),
                Some(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn no_header_or_only_other_algorithms_declare_nothing() {
        assert_eq!(declared_sha256(&HeaderMap::new()).unwrap(), None);
        assert_eq!(declared_sha256(&headers("sha-512=:AAAA:")).unwrap(), None);
    }

    #[test]
    fn malformed_values_are_refused() {
        for value in [
            "sha-256",
            "sha-256=abc",
            "sha-256=:not base64!:",
            "sha-256=:AAAA:",
            &format!("sha-256={HELLO}"),
        ] {
            assert!(
                matches!(
                    declared_sha256(&headers(value)),
                    Err(ApiError::InvalidRequest(_))
                ),
                "{value}"
            );
        }
    }
}

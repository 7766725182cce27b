//! Cross-origin requests (`http.cors`): which web applications on other origins may call the
//! API from a browser, answered by actix-cors. A browser asks first (a preflight `OPTIONS`) for
//! every request a page sends with `Authorization` or the tus headers; the answer names the
//! methods and headers allowed, and every answer afterwards (errors included, or the browser
//! hides the reason) names the origin and the headers the page may read.
//!
//! `*` is safe with auth on because authentication is a bearer header that a page must be
//! given and send itself, never a cookie the browser adds on its own. With auth off every
//! request is `anonymous`, so `*` would let any site read and delete the files of a local
//! instance through its visitors' browsers: refused at start-up.

use actix_cors::{Cors, CorsError};
use actix_web::{
    Error, ResponseError,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
};

use crate::base::{configuration::CorsSettings, error::ApiError};

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"];

/// What a browser client sends beyond the headers every request may carry: the token (or an
/// upload link's secret), the tus and resumable-upload headers, the integrity and idempotency fields, downloads' conditions.
const REQUEST_HEADERS: [&str; 20] = [
    "authorization",
    "upload-link",
    "content-type",
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-defer-length",
    "upload-concat",
    "upload-checksum",
    "upload-complete",
    "upload-draft-interop-version",
    "repr-digest",
    "x-http-method-override",
    "idempotency-key",
    "x-request-id",
    "x-requested-with",
    "range",
    "if-none-match",
    "if-match",
];

/// What a page must be able to read of an answer.
const EXPOSED_HEADERS: [&str; 22] = [
    "location",
    "content-location",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "etag",
    "retry-after",
    "x-request-id",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "upload-defer-length",
    "upload-concat",
    "upload-complete",
    "upload-limit",
    "upload-draft-interop-version",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
];

#[derive(Debug, thiserror::Error)]
pub enum CorsSettingsError {
    #[error(
        "http.cors.allowed_origins: `{0}` is not an origin: write scheme://host[:port], as browsers send it (no path, no trailing slash)"
    )]
    NotAnOrigin(String),
    #[error(
        "http.cors.allowed_origins = [\"*\"] needs auth.enabled = true: with auth off, any site could read and delete every file through its visitors' browsers; list the origins instead"
    )]
    WildcardWithoutAuth,
    #[error("http.cors.allowed_origins: `*` allows every origin, and cannot be listed with others")]
    WildcardAmongOthers,
}

/// The checked `http.cors` settings; `layer` makes the middleware (one per worker).
#[derive(Clone)]
pub struct CorsPolicy {
    settings: CorsSettings,
}

impl CorsPolicy {
    pub fn new(settings: &CorsSettings, auth_enabled: bool) -> Result<Self, CorsSettingsError> {
        let origins = &settings.allowed_origins;
        if origins.iter().any(|origin| origin == "*") {
            if origins.len() > 1 {
                return Err(CorsSettingsError::WildcardAmongOthers);
            }
            if !auth_enabled {
                return Err(CorsSettingsError::WildcardWithoutAuth);
            }
        } else if let Some(bad) = origins.iter().find(|origin| !is_origin(origin)) {
            return Err(CorsSettingsError::NotAnOrigin(bad.clone()));
        }
        Ok(Self {
            settings: settings.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.settings.allowed_origins.is_empty()
    }

    pub fn layer(&self) -> Cors {
        let origins = &self.settings.allowed_origins;
        let cors = match origins.first().map(String::as_str) {
            Some("*") => Cors::default().allow_any_origin().send_wildcard(),
            _ => origins
                .iter()
                .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin)),
        };
        cors.allowed_methods(METHODS)
            .allowed_headers(REQUEST_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(self.settings.max_age_secs as usize)
            // A request from an origin not listed is served without CORS headers (the browser
            // keeps its answer from the page), not refused: the page at `/` itself sends an
            // `Origin` with its uploads.
            .block_on_origin_mismatch(false)
    }
}

/// `scheme://host[:port]` exactly as a browser writes it in `Origin`.
fn is_origin(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.origin().ascii_serialization() == text
    })
}

/// Around the CORS layer: its refusals of a preflight, in problem+json like every error.
pub async fn explain_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let res = next.call(req).await?;
    let Some(refusal) = res
        .response()
        .error()
        .and_then(|error| error.as_error::<CorsError>())
    else {
        return Ok(res.map_into_left_body());
    };
    let error = match refusal {
        CorsError::OriginNotAllowed => {
            ApiError::CorsRefused("this origin is not in http.cors.allowed_origins".to_owned())
        }
        CorsError::MethodNotAllowed | CorsError::HeadersNotAllowed => {
            ApiError::CorsRefused(format!("{refusal}; see docs/configuration.md → http.cors"))
        }
        malformed => ApiError::InvalidRequest(format!("a malformed preflight: {malformed}")),
    };
    let (req, old) = res.into_parts();
    let mut new = error.error_response();
    if let Some(vary) = old.headers().get(header::VARY) {
        new.headers_mut().insert(header::VARY, vary.clone());
    }
    Ok(ServiceResponse::new(req, new).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            max_age_secs: 7200,
        }
    }

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        for good in [
            "https://app.example.com",
            "http://localhost:5173",
            "http://127.0.0.1:8080",
        ] {
            assert!(CorsPolicy::new(&settings(&[good]), false).is_ok(), "{good}");
        }
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com:443",
            "",
        ] {
            let refused = CorsPolicy::new(&settings(&[bad]), true).err();
            assert!(
                matches!(refused, Some(CorsSettingsError::NotAnOrigin(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn any_origin_needs_auth_and_stands_alone() {
        assert!(CorsPolicy::new(&settings(&["*"]), true).is_ok());
        assert!(matches!(
            CorsPolicy::new(&settings(&["*"]), false),
            Err(CorsSettingsError::WildcardWithoutAuth)
        ));
        assert!(matches!(
            CorsPolicy::new(&settings(&["*", "https://a.example"]), true),
            Err(CorsSettingsError::WildcardAmongOthers)
        ));
        assert!(!CorsPolicy::new(&settings(&[]), false).unwrap().enabled());
    }
}

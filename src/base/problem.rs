//! `application/problem+json` (RFC 9457): the body every error response has. `ApiError` says
//! which problem an error is; this writes it.

use actix_web::{HttpResponse, http::StatusCode};
use serde_json::{Map, Value};

use super::error_code::{ErrorCode, FieldError};

pub const CONTENT_TYPE: &str = "application/problem+json";

// An area that adds members of its own describes them with a schema of its own (`POST
// /checkout`'s `Unpaid`).
/// An error: RFC 9457 problem details with a stable `code`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Payload Too Large",
    "status": 413,
    "detail": "file exceeds the 1073741824-byte limit",
    "code": "file_too_large"
}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// `invalid_request` with status 422 only: each invalid field, by its JSON path.
    pub errors: Option<Vec<FieldError>>,
}

/// The members every problem has; callers may add their own (RFC 9457 extension members).
pub fn body(status: StatusCode, code: ErrorCode, detail: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("type".into(), "about:blank".into());
    body.insert(
        "title".into(),
        status.canonical_reason().unwrap_or("Error").into(),
    );
    body.insert("status".into(), status.as_u16().into());
    body.insert("detail".into(), detail.into());
    body.insert("code".into(), code.as_str().into());
    body
}

pub fn respond(status: StatusCode, body: Map<String, Value>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .body(Value::Object(body).to_string())
}

/// Tags an error response with its code, for the request metrics (`telemetry::metrics`).
pub fn tag(response: &mut HttpResponse, code: ErrorCode) {
    response.extensions_mut().insert(code);
}

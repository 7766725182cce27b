//! `application/problem+json` (RFC 9457): the one renderer for every error response.

use actix_web::{
    HttpResponse,
    body::{BoxBody, EitherBody, MessageBody},
    dev::ServiceResponse,
    http::{StatusCode, header},
    middleware::ErrorHandlerResponse,
};
use serde_json::{Map, Value};

use crate::base::{error::ErrorCode, telemetry::metrics};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error: RFC 9457 problem details with a stable `code`.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Payload Too Large",
    "status": 413,
    "detail": "file exceeds the 1073741824-byte limit",
    "code": "file_too_large"
}))]
pub struct Problem {
    #[schema(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// `validation_failed` only: each invalid field, by its JSON path.
    pub errors: Option<Vec<crate::base::error::FieldError>>,
    /// `POST /checkout` only: the order as it ended.
    #[schema(value_type = Option<crate::api::checkout::Placed>)]
    pub order: Option<serde_json::Value>,
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

pub fn response(status: StatusCode, code: ErrorCode, detail: &str) -> HttpResponse {
    let mut response = respond(status, body(status, code, detail));
    metrics::tag(&mut response, code);
    response
}

/// Turns error responses that do not come from our own error types (unknown routes, wrong
/// methods, framework rejections) into problem+json, so clients see one error format.
pub fn render_framework_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == CONTENT_TYPE.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::InvalidRequest,
            "method not allowed on this resource",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::RequestTooLarge, "request is too large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::UploadTimeout, "request took too long"),
        s if s.is_server_error() => (ErrorCode::Internal, "internal server error"),
        _ => (
            ErrorCode::InvalidRequest,
            "the request could not be processed",
        ),
    };
    let (req, old) = res.into_parts();
    let mut new = response(status, code, detail);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<EitherBody<B, BoxBody>> =
        ServiceResponse::new(req, new).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

/// The error and its causes, each once: many errors already repeat their cause's text in their
/// own, which would otherwise be printed again.
pub fn cause_chain(error: &(dyn std::error::Error + '_)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn each_cause_is_told_once() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let error = crate::startup::StartupError::Bind("127.0.0.1:8080".into(), io);
        assert_eq!(
            cause_chain(&error),
            "could not listen on 127.0.0.1:8080 (server.host, server.port): Connection refused"
        );
        let sqlx = sqlx::Error::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(
            cause_chain(&sqlx),
            "error communicating with database: refused"
        );
    }
}

//! `application/problem+json` (RFC 9457): the one renderer for every error response.

use actix_web::{
    HttpResponse,
    body::{BoxBody, EitherBody, MessageBody},
    dev::ServiceResponse,
    http::{StatusCode, header},
    middleware::ErrorHandlerResponse,
};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    pub code: &'a str,
}

pub fn response(status: StatusCode, code: &str, detail: &str) -> HttpResponse {
    let problem = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        code,
    };
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .body(serde_json::to_string(&problem).expect("a problem always serializes"))
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
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("invalid_request", "method not allowed on this resource")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("request_too_large", "request is too large"),
        StatusCode::REQUEST_TIMEOUT => ("upload_timeout", "request took too long"),
        s if s.is_server_error() => ("internal", "internal server error"),
        _ => ("invalid_request", "the request could not be processed"),
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

pub fn cause_chain(error: &(dyn std::error::Error + '_)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

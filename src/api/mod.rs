//! The HTTP areas: each owns its routes and the state it registers. The route table that
//! mounts them is `routes`.

pub mod account;
pub mod checkout;
pub mod files;
pub mod lessons;
pub mod lifetimes;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod resumable;
pub mod uploads;

/// The body's length as the client announced it (`Content-Length`), when it did.
pub fn declared_length(headers: &actix_web::http::header::HeaderMap) -> Option<u64> {
    headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Marks an answer about one user's data: never kept by a shared cache, nor stored at all.
pub fn owned(builder: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    use actix_web::http::header::{CacheControl, CacheDirective};
    builder.insert_header(CacheControl(vec![
        CacheDirective::Private,
        CacheDirective::NoStore,
    ]))
}

/// A JSON number without a fractional part: `3` or `3.0`, as JSON Schema's `integer` (and a
/// JavaScript client's numbers) have it.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let Some(number) =
        <Option<serde_json::Number> as serde::Deserialize>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    let whole = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && value.abs() < 2f64.powi(53))
            .map(|value| value as i64)
    });
    whole
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a whole number")))
}

/// A request body that is a JSON object, as `T`: `400` when it is not JSON; `422` naming the
/// field when it is not an object or not a `T`. `None` for an empty body or `null`.
pub fn json_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, crate::base::error::ApiError> {
    use crate::base::{error::ApiError, error_code::FieldError};
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::InvalidRequest(format!("the body is not valid JSON: {error}"))
    })?;
    let invalid = |field: String, message: String| {
        ApiError::Validation(vec![FieldError::new(field, message)])
    };
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(_) => serde_path_to_error::deserialize(value)
            .map(Some)
            .map_err(|e| invalid(e.path().to_string(), e.into_inner().to_string())),
        _ => Err(invalid(".".into(), "must be a JSON object".into())),
    }
}

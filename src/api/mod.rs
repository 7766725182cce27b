//! The HTTP areas: each owns its routes and the state it registers. The route table that
//! mounts them is `routes`.

pub mod account;
pub mod checkout;
pub mod files;
pub mod lessons;
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

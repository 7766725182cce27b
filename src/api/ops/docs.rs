//! `/openapi.json` (the document as rendered at start-up) and `/docs` (Swagger UI, whose files
//! come from the `swagger-ui-dist` crate).

use actix_web::{
    HttpResponse,
    http::{StatusCode, header},
    web,
};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{api::openapi::Documented, base::error::ApiError};

/// The document as served: rendered once, at start-up.
#[derive(Clone)]
pub struct Rendered(web::Bytes);

impl Rendered {
    pub fn new(document: String) -> Self {
        Self(web::Bytes::from(document))
    }
}

/// `/openapi.json` and `/docs`; Swagger UI's files come from the `swagger-ui-dist` crate.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/openapi.json",
            web::resource("/openapi.json").route(web::get().to(openapi_json)),
        )
        .with(__path_openapi_json),
    )
    .service(
        Documented::new(
            "/docs",
            web::resource(["/docs", "/docs/"]).route(web::get().to(page)),
        )
        .with(__path_page),
    )
    .map(|cfg| {
        cfg.route("/docs/start.js", web::get().to(start))
            // Swagger UI's OAuth2 redirect page has an inline script and none of our headers;
            // the API's tokens are bearer tokens, not OAuth2: it is not served.
            .route("/docs/oauth2-redirect.html", web::route().to(absent))
            .service(swagger_ui_dist::generate_scope(
                swagger_ui_dist::ApiDefinition {
                    uri_prefix: "/docs",
                    api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
                    title: Some("intake API"),
                },
            ))
    });
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json",
        body = Object)))]
async fn openapi_json(rendered: web::Data<Rendered>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(rendered.0.clone())
}

/// This document in Swagger UI.
///
/// Our own page rather than the crate's, whose start-up script is inline: every script here
/// is a file, so the page works under a Content-Security-Policy without `unsafe-inline`.
#[utoipa::path(get, path = "/docs", tag = "operations", operation_id = "docs_page",
    responses((status = 200, description = "an HTML page", content_type = "text/html")))]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime::TEXT_HTML_UTF_8)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_POLICY))
        .body(include_str!("docs.html"))
}

async fn absent() -> Result<HttpResponse, ApiError> {
    Err(ApiError::Refused(StatusCode::NOT_FOUND))
}

async fn start() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime::APPLICATION_JAVASCRIPT_UTF_8)
        .body(include_str!("docs.js"))
}

/// Swagger UI sets inline styles and draws icons from data: URLs.
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

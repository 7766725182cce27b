//! The route table: every area's routes, mounted in one place, and the OpenAPI 3.1 document
//! they make. Each handler describes its operation (`#[utoipa::path]`) and the routes carry
//! those descriptions as they register (utoipa-actix-web), so that the document lists what the
//! server serves. Served at `/openapi.json`, browsable at `/docs`, committed as
//! `docs/openapi.json`.

use actix_web::{App, web};
use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};
use utoipa_actix_web::{AppExt, service_config::ServiceConfig};

use crate::{
    api::{account, checkout, files, lessons, ops, page, resumable, uploads},
    base::{configuration::Settings, error_code, problem, telemetry::metrics::UploadRoutes},
    events::{hook, payload},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "intake",
        description = "A streaming file upload service: multipart and resumable (tus 1.0) \
                       uploads, metadata in Postgres. Errors are `application/problem+json` \
                       with a stable `code` (docs/api.md lists them).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    modifiers(&BearerTokens),
    components(schemas(
        problem::Problem,
        error_code::ErrorCode,
        error_code::FieldError,
        payload::Event,
        hook::Proposal,
    )),
    tags(
        (name = "files", description = "Upload, list, download and delete files"),
        (name = "resumable", description = "Resumable uploads: tus 1.0 (core, creation, \
            creation-with-upload, creation-defer-length, termination, checksum, expiration, \
            and concatenation on the disk backend)"),
        (name = "checkout", description = "The checkout example: payment and email concurrently"),
        (name = "lessons", description = "The async lessons"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
struct Base;

struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let components = openapi.components.get_or_insert_default();
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.configure(ops::docs::routes)
        .configure(ops::metrics::routes)
        .configure(ops::health::routes)
        .configure(uploads::routes)
        .configure(files::routes)
        .configure(resumable::routes)
        .configure(checkout::routes)
        .configure(lessons::routes)
        .configure(page::routes)
        .configure(account::routes);
}

/// The routes that bring a file's bytes, for the request metrics.
pub fn upload_routes() -> UploadRoutes {
    let mut routes: Vec<_> = uploads::PATHS.iter().map(|path| ("POST", *path)).collect();
    routes.extend(resumable::upload_routes());
    UploadRoutes(routes)
}

/// Registers the routes in the application (their descriptions are collected by `document`).
pub fn register(cfg: &mut web::ServiceConfig) {
    routes(&mut ServiceConfig::new(cfg));
}

/// The document, built from the routes as the application registers them.
pub fn document() -> openapi::OpenApi {
    let mut document = crate::api::openapi::documenting(|| {
        App::new()
            .into_utoipa_app()
            .openapi(Base::openapi())
            .configure(routes)
            .split_for_parts()
            .1
    });
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // One handler for GET and HEAD is described once, for both: an operation id must be unique.
    for item in document.paths.paths.values_mut() {
        if let (Some(get), Some(head)) = (&item.get, &mut item.head)
            && head.operation_id == get.operation_id
            && let Some(id) = &mut head.operation_id
        {
            id.push_str("_head");
        }
    }
    document
}

/// The document with this server's limits, as served, printed by `intake openapi`, and (with
/// the default settings) committed as docs/openapi.json.
pub fn render(settings: &Settings) -> String {
    let mut document = serde_json::to_value(document()).expect("the document serializes");
    fit(&mut document, settings);
    let mut json = serde_json::to_string_pretty(&document).expect("JSON serializes");
    json.push('\n');
    json
}

/// What the code cannot know: the limits this server was configured with, so that a client (or
/// a test generated from the document) knows what will be accepted.
fn fit(document: &mut Value, settings: &Settings) {
    let lessons = &settings.lessons;
    for (path, max) in [
        ("/paths/~1slow/get/parameters/0/schema", lessons.slow_max_ms),
        (
            "/paths/~1blocking/get/parameters/0/schema",
            lessons.blocking_max_ms,
        ),
    ] {
        let schema = member(document, path);
        schema.insert("maximum".into(), max.into());
        schema.insert("default".into(), lessons::default_wait_ms(max).into());
    }
    // ISO 4217, as the checkout validates it.
    let currencies: Vec<&str> = <iso_currency::Currency as iso_currency::IntoEnumIterator>::iter()
        .map(|currency| currency.code())
        .collect();
    member(document, "/components/schemas/Order/properties/currency")
        .insert("enum".into(), currencies.into());
    member(document, "/components/schemas/BatchForm/properties/files")
        .insert("maxItems".into(), settings.upload.max_files.into());
    member(
        document,
        "/components/schemas/NewUploadLink/properties/max_file_bytes",
    )
    .insert("maximum".into(), settings.upload.max_file_bytes.into());
    if !lessons.enabled {
        let paths = member(document, "/paths");
        for path in lessons::TEACHING {
            paths.remove(path);
        }
    }
}

fn member<'a>(document: &'a mut Value, pointer: &str) -> &'a mut serde_json::Map<String, Value> {
    document
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the document has an object at {pointer}"))
}

#[cfg(test)]
mod tests {
    /// Clients are generated from the committed copy: it must be what the server serves.
    #[test]
    fn the_committed_document_is_current() {
        let committed = include_str!("../docs/openapi.json");
        let defaults = crate::base::configuration::Settings::load(None).expect("the settings load");
        assert!(
            committed == super::render(&defaults),
            "docs/openapi.json is stale: run `cargo run -q -- openapi > docs/openapi.json`"
        );
    }
}

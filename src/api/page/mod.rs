//! The page at `/`: upload with progress (tus, resumable), and the caller's files. Plain
//! HTML, CSS and JS compiled into the binary, with tus-js-client vendored from npm
//! (`src/api/page/assets/vendor`, see its README): nothing is loaded from elsewhere. Its text
//! is compressed when the browser takes it (never the files' downloads, which are sent as
//! stored).

use actix_web::{
    Error, Handler, HttpResponse, Resource, Responder,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::header::{self, CacheControl, CacheDirective},
    middleware::Compress,
    web,
};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::api::openapi::Documented;

/// Only our own files, no inline script or style, no form posts, never framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

const TUS_CLIENT: &str = "/vendor/tus-js-client-4.3.1.min.js";

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/",
            web::resource("/")
                .wrap(Compress::default())
                .route(web::get().to(page))
                .route(web::head().to(page)),
        )
        .with(__path_page),
    )
    .map(|cfg| {
        // An upload link's URL, opened in a browser: the page, for a visitor without a token
        // (`GET` asking for JSON is the uploads area's). The URL carries the link's secret: it
        // is not sent on as a referrer.
        cfg.service(
            web::resource("/send/{secret}")
                .wrap(Compress::default())
                .route(web::get().to(visitor_page)),
        )
        .service(text("/app.js", || {
            asset(JAVASCRIPT, include_str!("assets/app.js"), false)
        }))
        .service(text("/app.css", || {
            asset(CSS, include_str!("assets/app.css"), false)
        }))
        .service(text(TUS_CLIENT, || {
            asset(
                JAVASCRIPT,
                include_str!("assets/vendor/tus-js-client-4.3.1.min.js"),
                true,
            )
        }))
        // Browsers ask for /favicon.ico whatever the page says; the page names the SVG.
        .service(text("/favicon.ico", icon))
        .service(text("/favicon.svg", icon))
    });
}

/// One of the page's files at `path`, compressed for a browser that takes it.
fn text<F, R>(
    path: &str,
    handler: F,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
>
where
    F: Handler<(), Output = R> + Clone + 'static,
    R: Responder + 'static,
{
    web::resource(path)
        .wrap(Compress::default())
        .route(web::get().to(handler))
}

async fn icon() -> HttpResponse {
    asset(SVG, include_str!("assets/favicon.svg"), false).await
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The upload page.
#[utoipa::path(get, path = "/", tag = "operations", operation_id = "upload_page",
    responses((status = 200, description = "an HTML page", content_type = "text/html")))]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(mime::TEXT_HTML_UTF_8)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(include_str!("assets/index.html"))
}

async fn visitor_page() -> HttpResponse {
    let mut page = page().await;
    page.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    page
}

/// A versioned file never changes; ours may with every release, so they are revalidated.
async fn asset(content_type: &'static str, body: &'static str, versioned: bool) -> HttpResponse {
    let caching = if versioned {
        vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ]
    } else {
        vec![CacheDirective::NoCache]
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(CacheControl(caching))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

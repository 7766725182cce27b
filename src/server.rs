//! The HTTP server: actix-web's `HttpServer`, assembled from its parts so that a request that
//! announces `Expect: 100-continue` with a body over the limit is answered `413` at once,
//! instead of being told to go on (actix-http sends `100 Continue` before any handler runs, and
//! `HttpServer` offers no hook for it). Timeouts, backlog and graceful shutdown are
//! `HttpServer`'s defaults.

use std::{future::ready, io, net::TcpListener, time::Duration};

use actix_http::{HttpMessage, HttpService, Method, Request, header};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::{
    App, ResponseError,
    body::MessageBody,
    dev::{AppConfig, Server, ServiceFactory, ServiceRequest, ServiceResponse},
};
use uuid::Uuid;

use crate::{
    api::uploads,
    base::{configuration::Settings, error::ApiError},
};

const BACKLOG: u32 = 1024;
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until stopped (SIGTERM, SIGINT), as `HttpServer` would.
pub fn serve<F, T, B>(listener: TcpListener, settings: &Settings, app: F) -> io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let max_request_bytes = settings.upload.max_request_bytes;
    let mut builder = Server::build()
        .backlog(BACKLOG)
        .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.workers > 0 {
        builder = builder.workers(settings.server.workers);
    }
    if settings.server.max_blocking_threads > 0 {
        builder = builder.worker_max_blocking_threads(settings.server.max_blocking_threads);
    }
    let shutdown = builder.graceful_shutdown_signal();
    Ok(builder
        .listen("intake", listener, move || {
            let shutdown = shutdown.clone();
            let app = app()
                .into_factory()
                .map_err(|error: actix_web::Error| error.error_response());
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(addr)
                .expect(fn_service(move |req: Request| {
                    ready(expect_continue(req, max_request_bytes))
                }))
                .finish(map_config(app, |()| AppConfig::default()))
                .tcp()
        })?
        .run())
}

/// Lets a request announcing `Expect: 100-continue` go on, unless it is an upload whose
/// `Content-Length` is already over the limit: that one is refused before its body is sent.
fn expect_continue(req: Request, max_request_bytes: u64) -> Result<Request, actix_web::Error> {
    let is_upload = req.method() == Method::POST && uploads::PATHS.contains(&req.path());
    if !is_upload
        || crate::api::declared_length(req.headers())
            .is_none_or(|length| length <= max_request_bytes)
    {
        return Ok(req);
    }
    let error = ApiError::RequestTooLarge(max_request_bytes);
    let mut response = error.error_response();
    // Middleware never sees this request: it gets its id here.
    response.headers_mut().insert(
        header::HeaderName::from_static("x-request-id"),
        header::HeaderValue::from_str(&Uuid::new_v4().to_string()).expect("a uuid is a header"),
    );
    Err(actix_web::error::InternalError::from_response(error, response).into())
}

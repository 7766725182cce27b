//! Logging (readable lines locally, JSON in production; `RUST_LOG` overrides `log.level`),
//! traces exported over OTLP when `telemetry.otlp_endpoint` is set, and metrics.

pub mod client_faults;
pub mod metrics;

use std::io::IsTerminal;

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{ExporterBuildError, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Instrument, Span};
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::base::configuration::{LogFormat, LogSettings, TelemetrySettings};

/// What must outlive the server: the trace exporter, flushed by `shutdown`.
#[must_use = "spans still buffered are lost unless `shutdown` is called"]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Sends the spans still buffered. Blocks: call it off the async runtime's threads.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("intake: could not send the last spans: {error}");
        }
    }
}

/// Installs the global subscriber: logs to stdout, and spans to an OTLP collector when one is
/// configured. Call once per process.
pub fn init(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
) -> Result<Tracing, ExporterBuildError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(colour_wanted(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ));
    let lines = match log.format {
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => lines.compact().boxed(),
    };
    let provider = otlp_provider(telemetry)?;
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE)));
    tracing_subscriber::registry()
        .with(filter)
        .with(client_faults::ClientFaults)
        .with(lines)
        .with(spans)
        .init();
    Ok(Tracing { provider })
}

/// `tokio::spawn` inside the current span and request: what the task does stays in the
/// request's trace, and `request_id` answers as it does in the request.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let future = future.instrument(Span::current());
    match request_id() {
        Some(id) => tokio::spawn(REQUEST_ID.scope(id, future)),
        None => tokio::spawn(future),
    }
}

tokio::task_local! {
    static REQUEST_ID: uuid::Uuid;
}

/// The id of the request being served (`x-request-id`), outside a request `None`.
pub fn request_id() -> Option<uuid::Uuid> {
    REQUEST_ID.try_with(|id| *id).ok()
}

/// The instrumentation scope the exported spans name.
const SCOPE: &str = "intake";

/// `telemetry.otlp_endpoint` is the collector's base address, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// would be: spans go to its `/v1/traces`.
fn otlp_provider(
    settings: &TelemetrySettings,
) -> Result<Option<SdkTracerProvider>, ExporterBuildError> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Colour codes only for a person at a terminal: a file or a pipe (a log collector, `tee`)
/// would keep them as noise. A non-empty `NO_COLOR` turns them off there too (no-color.org).
fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The span every request's log lines carry: fewer fields than tracing-actix-web's default
/// (whose client address, user agent and host cost a fifth of a small request's CPU), built
/// only when the `info` level is on.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = request.match_pattern().as_deref().unwrap_or("unmatched"),
            request_id = request_id.map(tracing::field::display),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Echoes the request id that `TracingLogger` put in every log line, so that a client's report
/// can be matched to the server's logs (and to the events the request caused), and makes it
/// `request_id`'s answer while the request is served.
pub async fn echo_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().copied();
    let mut res = match id {
        Some(id) => REQUEST_ID.scope(*id, next.call(req)).await?,
        None => next.call(req).await?,
    };
    if let Some(id) = id {
        let value = HeaderValue::from_str(&id.to_string()).expect("a uuid is a valid header");
        res.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    Ok(res)
}

/// The error and its causes, each once, for the log: many errors already repeat their cause's
/// text in their own, which would otherwise be printed again.
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
    use std::ffi::OsStr;

    use std::io;

    use super::{cause_chain, colour_wanted};

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("could not listen on 127.0.0.1:8080 (server.host, server.port)")]
    struct Bind(#[source] io::Error);

    #[test]
    fn each_cause_is_told_once() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            cause_chain(&Bind(io)),
            "could not listen on 127.0.0.1:8080 (server.host, server.port): Connection refused"
        );
        let sqlx = sqlx::Error::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(
            cause_chain(&sqlx),
            "error communicating with database: refused"
        );
    }
}

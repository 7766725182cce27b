//! Prometheus metrics: the one place their names are written, the process's recorder, and the
//! middleware that counts requests; `GET /metrics` renders them (`api::ops::metrics`). README →
//! Operating intake lists them all.
//!
//! Labels are bounded by construction: a route's pattern (never its path), a method, a status
//! class, an error code, a backend, an operation.

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    sync::OnceLock,
    time::{Duration, Instant},
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
    middleware::Next,
    web,
};
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::base::error_code::ErrorCode;

/// Upper bounds, in seconds, of every histogram's buckets: from a cached small request to a
/// multi-GiB upload.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often recorded histogram samples are folded into their buckets: between two scrapes
/// they would otherwise pile up in memory.
const UPKEEP: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Every application of one process (tests
/// start many) records into it.
pub fn recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

pub fn spawn_upkeep(recorder: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP);
        loop {
            ticks.tick().await;
            recorder.run_upkeep();
        }
    })
}

fn describe() {
    describe_counter!(
        "intake_http_requests_total",
        "HTTP requests answered, by method, route pattern and status class"
    );
    describe_histogram!(
        "intake_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response, by method and route pattern"
    );
    describe_counter!(
        "intake_upload_bytes_total",
        Unit::Bytes,
        "File bytes received (multipart file parts and tus PATCH bodies), kept or not"
    );
    describe_counter!(
        "intake_files_stored_total",
        "Files committed (object durable and row written), by protocol"
    );
    describe_gauge!(
        "intake_uploads_in_progress",
        "Uploads being received by this instance"
    );
    describe_counter!(
        "intake_uploads_refused_total",
        "Upload requests answered with an error, by error code"
    );
    describe_counter!(
        "intake_auth_refused_total",
        "Requests refused for their credentials (401) or their rate (429), by error code"
    );
    describe_histogram!(
        "intake_upload_durable_seconds",
        Unit::Seconds,
        "Time to make a received file durable (fsync on disk, multipart completion on S3)"
    );
    describe_histogram!(
        "intake_storage_operation_seconds",
        Unit::Seconds,
        "Storage operations, by backend, operation and outcome"
    );
    describe_counter!(
        "intake_s3_part_buffers_total",
        "Parts that found the memory budget full: spilled to disk while filling, or waited to be read back"
    );
    describe_counter!("intake_sweep_runs_total", "Storage sweeps run, by outcome");
    describe_counter!(
        "intake_sweep_actions_total",
        "What sweeps did: objects kept or removed, resumable uploads expired, files whose lifetime was over deleted"
    );
    describe_gauge!(
        "intake_db_pool_connections",
        "Postgres connections, by pool (requests, bookkeeping) and state (idle, in_use)"
    );
    describe_gauge!(
        "intake_db_pool_max_connections",
        "Each pool's share of database.max_connections"
    );
    describe_counter!(
        "intake_db_pool_timeouts_total",
        "Requests that waited database.acquire_timeout_secs for a connection and got none"
    );
    describe_counter!(
        "intake_http_connection_errors_total",
        "Connections the HTTP layer ended for the client's fault: malformed, stalled or gone"
    );
    describe_counter!(
        "intake_event_attempts_total",
        "Attempts to deliver an event to a sink, by sink and outcome (delivered, failed)"
    );
    describe_gauge!(
        "intake_event_deliveries_pending",
        "Events waiting for a sink (due, or waiting for a retry), by sink"
    );
    describe_gauge!(
        "intake_event_deliveries_failed",
        "Events a sink never took after every attempt, kept until pruned or retried, by sink"
    );
    describe_gauge!(
        "intake_event_oldest_pending_seconds",
        Unit::Seconds,
        "Age of the oldest event a sink has not taken yet (0: none), by sink"
    );
    describe_gauge!(
        "intake_event_sink_disabled",
        "1 for a sink disabled because its endpoint answered 410 Gone, by sink"
    );
    describe_counter!(
        "intake_upload_hook_calls_total",
        "Calls of the upload hook (events.pre_upload), by verdict: allowed, refused, unavailable (the hook could not be asked; on_failure decided)"
    );
    describe_counter!(
        "intake_checkout_provider_calls_total",
        "Checkout provider calls, by provider (payment, email) and outcome"
    );
    describe_histogram!(
        "intake_checkout_provider_call_seconds",
        Unit::Seconds,
        "Checkout provider call durations, by provider"
    );
}

/// The routes that bring a file's bytes, by method and pattern, as the route table mounts them:
/// their refusals are counted as refused uploads.
pub struct UploadRoutes(pub Vec<(&'static str, &'static str)>);

/// Counts and times every request; answers to uploads and refused credentials also by code.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status();
    if let Some(code) = res.response().extensions().get::<ErrorCode>() {
        let uploads = res.request().app_data::<web::Data<UploadRoutes>>();
        if uploads.is_some_and(|uploads| uploads.0.contains(&(method, route.as_str()))) {
            counter!("intake_uploads_refused_total", "code" => code.as_str()).increment(1);
        }
        if matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
        ) {
            counter!("intake_auth_refused_total", "code" => code.as_str()).increment(1);
        }
    }
    let (duration, count) = request_handles(method, route, status_class(status));
    duration.record(started.elapsed());
    count.increment(1);
    Ok(res)
}

type RequestKey = (&'static str, String, &'static str);

thread_local! {
    /// Each worker's handles to the request metrics it has recorded, by method, route and
    /// status class: a hash of three short strings instead of building a metric key and
    /// looking it up in the registry, twice, on every request.
    static REQUEST_HANDLES: RefCell<HashMap<RequestKey, (Histogram, Counter)>> =
        RefCell::new(HashMap::new());
}

fn request_handles(
    method: &'static str,
    route: String,
    status: &'static str,
) -> (Histogram, Counter) {
    REQUEST_HANDLES.with_borrow_mut(|handles| {
        let key = (method, route, status);
        if let Some(found) = handles.get(&key) {
            return found.clone();
        }
        let route = key.1.clone();
        let found = (
            histogram!(
                "intake_http_request_duration_seconds",
                "method" => method,
                "route" => route.clone(),
            ),
            counter!(
                "intake_http_requests_total",
                "method" => method,
                "route" => route,
                "status" => status,
            ),
        );
        handles.insert(key, found.clone());
        found
    })
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Counts file bytes as they arrive; one handle per upload, incremented per chunk.
pub fn bytes_received() -> metrics::Counter {
    counter!("intake_upload_bytes_total")
}

/// `protocol`: `multipart` or `tus`.
pub fn files_stored(protocol: &'static str, files: usize) {
    counter!("intake_files_stored_total", "protocol" => protocol).increment(files as u64);
}

/// Times a storage operation, in a span of its own.
pub async fn observed<T, E>(
    backend: &'static str,
    operation: &'static str,
    run: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    observe(backend, operation, operation_span(backend, operation), run)
        .await
        .0
}

/// Times one batch of an upload's writes. A large upload writes thousands of them: their spans
/// exist only at the debug level, so that traces (and the upload stream) carry them only when
/// asked to.
pub async fn batch_written<T, E>(
    backend: &'static str,
    run: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let span = tracing::debug_span!("storage", backend, operation = "write");
    observe(backend, "write", span, run).await.0
}

/// Times the operation that makes a received file durable: also the upload's durability time.
pub async fn durable<T, E>(
    backend: &'static str,
    run: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let (result, took) = observe(backend, "finish", operation_span(backend, "finish"), run).await;
    if result.is_ok() {
        histogram!("intake_upload_durable_seconds", "backend" => backend).record(took);
    }
    result
}

fn operation_span(backend: &'static str, operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "storage",
        backend,
        operation,
        // On disk, `finish` and `pause` say how the writer's time was spent.
        hashing_ms = tracing::field::Empty,
        writing_ms = tracing::field::Empty,
        syncing_ms = tracing::field::Empty,
    )
}

async fn observe<T, E>(
    backend: &'static str,
    operation: &'static str,
    span: tracing::Span,
    run: impl Future<Output = Result<T, E>>,
) -> (Result<T, E>, Duration) {
    let started = Instant::now();
    let result = run.instrument(span).await;
    let took = started.elapsed();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    histogram!(
        "intake_storage_operation_seconds",
        "backend" => backend,
        "operation" => operation,
        "outcome" => outcome,
    )
    .record(took);
    (result, took)
}

/// `event`: `spilled` or `waited`.
pub fn part_buffer(event: &'static str) {
    counter!("intake_s3_part_buffers_total", "event" => event).increment(1);
}

pub fn sweep_run(outcome: &'static str) {
    counter!("intake_sweep_runs_total", "outcome" => outcome).increment(1);
}

/// `action`: `kept`, `removed`, `expired` or `lifetime_over`.
pub fn sweep_actions(action: &'static str, count: usize) {
    if count > 0 {
        counter!("intake_sweep_actions_total", "action" => action).increment(count as u64);
    }
}

pub fn pool_timed_out() {
    counter!("intake_db_pool_timeouts_total").increment(1);
}

pub fn connection_error() {
    counter!("intake_http_connection_errors_total").increment(1);
}

/// `provider`: `payment` or `email`; `outcome`: the status the order reports.
pub fn provider_call(provider: &'static str, outcome: &'static str, took: Duration) {
    counter!(
        "intake_checkout_provider_calls_total",
        "provider" => provider,
        "outcome" => outcome,
    )
    .increment(1);
    histogram!("intake_checkout_provider_call_seconds", "provider" => provider).record(took);
}

/// `verdict`: `allowed`, `refused` or `unavailable`.
pub fn upload_hook_call(verdict: &'static str) {
    counter!("intake_upload_hook_calls_total", "verdict" => verdict).increment(1);
}

pub fn event_attempt(sink: &str, delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!("intake_event_attempts_total", "sink" => sink.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A sink's backlog as the last count found it.
pub fn event_backlog(sink: &str, pending: i64, failed: i64, oldest: Option<f64>, disabled: bool) {
    let sink = sink.to_owned();
    gauge!("intake_event_deliveries_pending", "sink" => sink.clone()).set(pending as f64);
    gauge!("intake_event_deliveries_failed", "sink" => sink.clone()).set(failed as f64);
    gauge!("intake_event_oldest_pending_seconds", "sink" => sink.clone())
        .set(oldest.unwrap_or(0.0));
    gauge!("intake_event_sink_disabled", "sink" => sink).set(f64::from(u8::from(disabled)));
}

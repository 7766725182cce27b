//! The tutorials' async lessons, each a small production-shaped endpoint.

use std::{sync::Arc, time::Duration};

use actix_web::{
    HttpResponse, Route,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::{Next, from_fn},
    web,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::{sync::Semaphore, time::Instant};
use tracing::Instrument;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    access::{
        auth::{self, Auth, Owner},
        rate_limit,
    },
    api::openapi::{
        Documented,
        responses::{Authenticated, Limited, NotFound},
    },
    base::{
        configuration::LessonSettings, error::ApiError, error_code::FieldError, problem::Problem,
    },
};

/// The most of an upstream body `/external` will read.
const MAX_EXTERNAL_BYTES: usize = 1024 * 1024;
const DEFAULT_WAIT_MS: u64 = 1000;

/// The lessons' own state: their limits, the client the outbound lesson calls with, and the
/// places on the blocking pool the blocking lesson may hold.
pub struct Lessons {
    pub settings: LessonSettings,
    /// One client (one connection pool) for every outbound call.
    pub http: reqwest::Client,
    /// `lessons.blocking_max_concurrent` permits.
    pub blocking: Arc<Semaphore>,
}

impl Lessons {
    pub fn new(settings: LessonSettings, http: reqwest::Client) -> Self {
        let places = settings.blocking_max_concurrent.max(1);
        Self {
            settings,
            http,
            blocking: Arc::new(Semaphore::new(places)),
        }
    }
}

/// The teaching endpoints, absent where `lessons.enabled` is off (`/ping` always answers).
pub const TEACHING: [&str; 4] = ["/slow", "/blocking", "/external", "/users/{id}"];

pub fn routes(cfg: &mut ServiceConfig) {
    let open = |path: &'static str, route: Route| {
        Documented::new(
            path,
            web::resource(path)
                .route(route)
                .wrap(from_fn(rate_limit::by_address))
                .wrap(from_fn(when_enabled)),
        )
    };
    cfg.service(
        Documented::new(
            "/ping",
            web::resource("/ping")
                .route(web::get().to(ping))
                .wrap(from_fn(rate_limit::by_address)),
        )
        .with(__path_ping),
    )
    .service(open(TEACHING[0], web::get().to(slow)).with(__path_slow))
    .service(open(TEACHING[1], web::get().to(blocking)).with(__path_blocking))
    .service(open(TEACHING[2], web::get().to(external)).with(__path_external))
    // Accounts hold names and emails: the caller is identified.
    .service(
        Documented::new(
            TEACHING[3],
            web::resource(TEACHING[3])
                .route(web::get().to(user))
                .wrap(from_fn(auth::identify))
                .wrap(from_fn(when_enabled)),
        )
        .with(__path_user),
    );
}

/// Where the lessons are off, they are as absent as any unknown path.
async fn when_enabled(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let enabled = req
        .app_data::<web::Data<Lessons>>()
        .is_some_and(|lessons| lessons.settings.enabled);
    if !enabled {
        let absent = ApiError::Refused(StatusCode::NOT_FOUND);
        return Ok(req.error_response(absent).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Pong {
    #[schema(example = "pong")]
    message: &'static str,
}

/// Runs `work` on the blocking pool once one of the lesson's places there is free: however many
/// clients ask, the lesson holds at most that many of the threads uploads write through. The
/// place is held until `work` ends, even if its request is gone.
async fn on_blocking_pool<T: Send + 'static>(
    places: &Arc<Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let place = Arc::clone(places)
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    web::block(move || {
        let done = work();
        drop(place);
        done
    })
    .await
    .map_err(ApiError::internal)
}

/// The cheapest answer: the framework's and the network's own cost.
#[utoipa::path(get, path = "/ping", tag = "lessons", responses((status = 200, body = Pong, description = "pong"), Limited))]
async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(Pong { message: "pong" })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Wait {
    /// How long to wait, up to `lessons.slow_max_ms` (`/slow`) or `lessons.blocking_max_ms`
    /// (`/blocking`); 1000 when absent.
    #[param(minimum = 0)]
    ms: Option<u64>,
}

/// What `/slow` and `/blocking` did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Waited {
    #[schema(example = "done")]
    status: &'static str,
    waited_ms: u64,
    /// `/blocking` only: the worker that answered, and the pool thread that slept.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_loop_thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocking_thread: Option<String>,
}

/// What a wait beyond the configured maximum gets.
#[derive(utoipa::IntoResponses)]
pub enum WaitRefused {
    #[response(
        status = 422,
        description = "`invalid_request` (with `errors`): `ms` beyond the configured maximum",
        content_type = "application/problem+json"
    )]
    TooLong(Problem),
    #[response(
        status = 400,
        description = "`invalid_request`: `ms` is not a whole number",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// A wait without `ms`: a second, or the most allowed if that is less.
pub fn default_wait_ms(max: u64) -> u64 {
    DEFAULT_WAIT_MS.min(max)
}

impl Wait {
    fn within(&self, max: u64) -> Result<u64, ApiError> {
        let ms = self.ms.unwrap_or(default_wait_ms(max));
        if ms > max {
            return Err(ApiError::Validation(vec![FieldError::new(
                "ms",
                format!("must be between 0 and {max}"),
            )]));
        }
        Ok(ms)
    }
}

/// `await`s a timer: the worker serves other requests meanwhile (`asyncio.sleep`).
#[utoipa::path(get, path = "/slow", tag = "lessons", params(Wait),
    responses((status = 200, body = Waited, description = "waited"), WaitRefused, Limited))]
async fn slow(
    query: web::Query<Wait>,
    lessons: web::Data<Lessons>,
) -> Result<HttpResponse, ApiError> {
    let ms = wait(&query, lessons.settings.slow_max_ms).await?;
    Ok(HttpResponse::Ok().json(Waited {
        status: "done",
        waited_ms: ms,
        event_loop_thread: None,
        blocking_thread: None,
    }))
}

async fn wait(query: &Wait, max_ms: u64) -> Result<u64, ApiError> {
    let ms = query.within(max_ms)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Blocking work (here `thread::sleep`, standing for a blocking library call or heavy CPU
/// work) goes to the blocking thread pool, never onto the event loop.
#[utoipa::path(get, path = "/blocking", tag = "lessons", params(Wait),
    responses((status = 200, body = Waited, description = "waited"), WaitRefused, Limited))]
async fn blocking(
    query: web::Query<Wait>,
    lessons: web::Data<Lessons>,
) -> Result<HttpResponse, ApiError> {
    let ms = query.within(lessons.settings.blocking_max_ms)?;
    let blocking_thread = on_blocking_pool(&lessons.blocking, move || {
        std::thread::sleep(Duration::from_millis(ms));
        thread_name()
    })
    .await?;
    Ok(HttpResponse::Ok().json(Waited {
        status: "done",
        waited_ms: ms,
        event_loop_thread: Some(thread_name()),
        blocking_thread: Some(blocking_thread),
    }))
}

fn thread_name() -> String {
    let thread = std::thread::current();
    thread
        .name()
        .map_or_else(|| format!("{:?}", thread.id()), str::to_owned)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    id: i64,
    name: String,
    email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// An awaited database read: the worker is free while Postgres answers. A caller sees only
/// their own account.
#[utoipa::path(get, path = "/users/{id}", tag = "lessons", security(("token" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = User, description = "the user"), NotFound, Authenticated))]
async fn user(
    id: web::Path<i64>,
    pool: web::Data<PgPool>,
    auth: web::Data<Auth>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    if !auth.may_see(owner, *id) {
        return Err(ApiError::NotFound("user"));
    }
    let user = sqlx::query_as!(
        User,
        "SELECT id, name, email, created_at FROM users WHERE id = $1",
        *id
    )
    .fetch_optional(pool.get_ref())
    .instrument(tracing::info_span!("db.find_user"))
    .await?
    .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Ok().json(user))
}

/// What `/external` fetched.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Fetched<'a> {
    url: &'a str,
    status: u16,
    elapsed_ms: u64,
    /// The upstream's JSON, or its text.
    body: Value,
}

/// An awaited outbound HTTP call under a timeout: `502` when it fails, `504` when it is late.
#[utoipa::path(get, path = "/external", tag = "lessons",
    responses(
        (status = 200, body = Fetched, description = "the upstream answered"),
        (status = 502, body = Problem, content_type = "application/problem+json",
            description = "`provider_unavailable`: the call failed"),
        (status = 504, body = Problem, content_type = "application/problem+json",
            description = "`provider_unavailable`: no answer in `lessons.external_timeout_ms`"),
        Limited,
    ))]
async fn external(lessons: web::Data<Lessons>) -> Result<HttpResponse, ApiError> {
    let url = &lessons.settings.external_url;
    let started = Instant::now();
    let limit = Duration::from_millis(lessons.settings.external_timeout_ms);
    let (status, body) = tokio::time::timeout(limit, fetch(&lessons.http, url))
        .await
        .map_err(|_| ApiError::UpstreamTimeout)??;
    Ok(HttpResponse::Ok().json(Fetched {
        url,
        status,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        body,
    }))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<(u16, Value), ApiError> {
    let upstream = |e: reqwest::Error| ApiError::Upstream(e.into());
    let mut response = client.get(url).send().await.map_err(upstream)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::Upstream(
            format!("{url} answered {status}").into(),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(upstream)? {
        if bytes.len() + chunk.len() > MAX_EXTERNAL_BYTES {
            return Err(ApiError::Upstream(
                format!("{url} sent more than {MAX_EXTERNAL_BYTES} bytes").into(),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status.as_u16(), body))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use futures_util::future::join_all;

    use super::*;

    /// However many ask at once, the blocking lesson holds at most its places on the blocking
    /// pool (each place is a thread uploads could not write through).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_lesson_never_holds_more_threads_than_its_places() {
        let places = Arc::new(Semaphore::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let lessons = (0..16).map(|_| {
            let (places, running, most) = (places.clone(), running.clone(), most.clone());
            async move {
                on_blocking_pool(&places, move || {
                    most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    // The lesson's own work: a thread that is busy.
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, SeqCst);
                })
                .await
            }
        });
        let done = join_all(lessons).await;
        assert!(done.iter().all(Result::is_ok));
        assert!(most.load(SeqCst) <= 2, "{} at once", most.load(SeqCst));
        assert_eq!(places.available_permits(), 2, "every place is given back");
    }

    /// A thousand waits of one second each finish together after one second of virtual time:
    /// none of them holds the thread. (A blocking sleep would stall the paused clock's runtime.)
    #[tokio::test(start_paused = true)]
    async fn a_thousand_slow_waits_overlap() {
        let started = Instant::now();
        let query = Wait { ms: Some(1000) };
        let waited = join_all((0..1000).map(|_| wait(&query, 10_000))).await;
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        assert!(waited.iter().all(|w| matches!(w, Ok(1000))));
    }

    #[test]
    fn waits_are_bounded() {
        assert_eq!(Wait { ms: None }.within(5000).unwrap(), DEFAULT_WAIT_MS);
        assert!(matches!(
            Wait { ms: Some(5001) }.within(5000),
            Err(ApiError::Validation(_))
        ));
    }
}

//! The tutorials' async lessons, each a small production-shaped endpoint.

use std::time::Duration;

use actix_web::{HttpResponse, Route, middleware::from_fn, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::{
    auth::{self, Owner},
    error::{ApiError, FieldError},
    rate_limit,
    state::AppState,
};

/// The most of an upstream body `/external` will read.
const MAX_EXTERNAL_BYTES: usize = 1024 * 1024;
const DEFAULT_WAIT_MS: u64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let open = |path, route: Route| {
        web::resource(path)
            .route(route)
            .wrap(from_fn(rate_limit::by_address))
    };
    cfg.service(open("/ping", web::get().to(ping)))
        .service(open("/slow", web::get().to(slow)))
        .service(open("/blocking", web::get().to(blocking)))
        .service(open("/external", web::get().to(external)))
        // Accounts hold names and emails: the caller is identified.
        .service(
            web::resource("/users/{id}")
                .route(web::get().to(user))
                .wrap(from_fn(auth::identify)),
        );
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(json!({"message": "pong"}))
}

#[derive(Debug, Deserialize)]
struct Wait {
    ms: Option<u64>,
}

impl Wait {
    fn within(&self, max: u64) -> Result<u64, ApiError> {
        let ms = self.ms.unwrap_or(DEFAULT_WAIT_MS);
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
async fn slow(
    query: web::Query<Wait>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ms = wait(&query, state.lessons.slow_max_ms).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "done", "waited_ms": ms})))
}

async fn wait(query: &Wait, max_ms: u64) -> Result<u64, ApiError> {
    let ms = query.within(max_ms)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Blocking work (here `thread::sleep`, standing for a blocking library call or heavy CPU
/// work) goes to the blocking thread pool, never onto the event loop.
async fn blocking(
    query: web::Query<Wait>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ms = query.within(state.lessons.blocking_max_ms)?;
    let blocking_thread = web::block(move || {
        std::thread::sleep(Duration::from_millis(ms));
        thread_name()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "done",
        "waited_ms": ms,
        "event_loop_thread": thread_name(),
        "blocking_thread": blocking_thread,
    })))
}

fn thread_name() -> String {
    let thread = std::thread::current();
    thread
        .name()
        .map_or_else(|| format!("{:?}", thread.id()), str::to_owned)
}

#[derive(Debug, Serialize)]
struct User {
    id: i64,
    name: String,
    email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// An awaited database read: the worker is free while Postgres answers.
async fn user(
    id: web::Path<i64>,
    state: web::Data<AppState>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    if !state.auth.may_see(owner, *id) {
        return Err(ApiError::NotFound("user"));
    }
    let user = sqlx::query_as!(
        User,
        "SELECT id, name, email, created_at FROM users WHERE id = $1",
        *id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Ok().json(user))
}

/// An awaited outbound HTTP call under a timeout: `502` when it fails, `504` when it is late.
async fn external(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let url = &state.lessons.external_url;
    let started = Instant::now();
    let limit = Duration::from_millis(state.lessons.external_timeout_ms);
    let (status, body) = tokio::time::timeout(limit, fetch(&state.http, url))
        .await
        .map_err(|_| ApiError::UpstreamTimeout)??;
    Ok(HttpResponse::Ok().json(json!({
        "url": url,
        "status": status,
        "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "body": body,
    })))
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
    use futures_util::future::join_all;

    use super::*;

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

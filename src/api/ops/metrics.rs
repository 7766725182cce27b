//! `GET /metrics`: what the process's recorder holds, in the Prometheus text format, with the
//! pool and upload gauges read at the moment of the scrape.

use actix_web::{HttpRequest, HttpResponse, web};
use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    access::{auth, quota::Quota},
    api::openapi::Documented,
    base::{error::ApiError, in_flight::InFlight, problem::Problem},
};

/// The scrape's own state.
pub struct Metrics {
    pub recorder: PrometheusHandle,
    /// `telemetry.metrics_token`; empty: `/metrics` is open.
    pub token: SecretString,
}

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/metrics",
            web::resource("/metrics").route(web::get().to(scrape)),
        )
        .with(__path_scrape),
    );
}

/// Prometheus metrics (README → Operating intake lists them).
///
/// Never rate-limited (a scraper must not be refused for scraping); open unless
/// `telemetry.metrics_token` is set.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "the Prometheus text format",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, body = Problem, content_type = "application/problem+json",
            description = "`unauthorized`: `telemetry.metrics_token` is set and not given"),
    ))]
async fn scrape(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    pool: web::Data<PgPool>,
    quota: web::Data<Quota>,
    in_flight: web::Data<InFlight>,
) -> Result<HttpResponse, ApiError> {
    if !metrics.token.expose_secret().is_empty() {
        auth::check_secret(req.headers(), &metrics.token)?;
    }
    for (name, pool) in [("requests", pool.get_ref()), ("bookkeeping", quota.pool())] {
        let idle = pool.num_idle();
        let in_use = (pool.size() as usize).saturating_sub(idle);
        gauge!("intake_db_pool_connections", "pool" => name, "state" => "idle").set(idle as f64);
        gauge!("intake_db_pool_connections", "pool" => name, "state" => "in_use")
            .set(in_use as f64);
        gauge!("intake_db_pool_max_connections", "pool" => name)
            .set(pool.options().get_max_connections());
    }
    gauge!("intake_uploads_in_progress").set(*in_flight.subscribe().borrow() as f64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.recorder.render()))
}

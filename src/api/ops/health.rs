//! Liveness and readiness probes.

use std::{io, time::Duration};

use actix_web::{HttpResponse, web};
use serde::Serialize;
use sqlx::PgPool;
use tracing::Instrument;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    api::openapi::Documented,
    base::{configuration::ServerSettings, error::ApiError, problem},
    storage::Storage,
};

pub const READY_PATH: &str = "/health/ready";

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/health/live",
            web::resource("/health/live").route(web::get().to(live)),
        )
        .with(__path_live),
    )
    .service(
        Documented::new(
            READY_PATH,
            web::resource(READY_PATH).route(web::get().to(ready)),
        )
        .with(__path_ready),
    );
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Healthy {
    #[schema(example = "ok")]
    status: &'static str,
}

const HEALTHY: Healthy = Healthy { status: "ok" };

/// Live: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, body = Healthy, description = "the process is up")))]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HEALTHY)
}

/// Ready: Postgres answers and the storage accepts a synced write; otherwise `503` with the
/// failing part's code.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, body = Healthy, description = "Postgres and the storage answer"),
        (status = 503, body = problem::Problem, content_type = "application/problem+json",
            description = "`database_unavailable` or `storage_unavailable`"),
    ))]
async fn ready(
    pool: web::Data<PgPool>,
    storage: web::Data<Storage>,
    health: web::Data<Health>,
) -> Result<HttpResponse, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(pool.get_ref());
    let ping = ping.instrument(tracing::info_span!("db.ping"));
    // At once, so that the answer comes within one timeout whatever hangs.
    let (pinged, probed) = futures_util::future::join(
        tokio::time::timeout(health.timeout, ping),
        tokio::time::timeout(health.timeout, storage.probe()),
    )
    .await;
    match pinged {
        Ok(pinged) => pinged.map_err(ApiError::DatabaseUnavailable)?,
        Err(_) => return Err(ApiError::DatabaseUnavailable(sqlx::Error::Io(too_slow()))),
    };
    match probed {
        Ok(probed) => probed?,
        Err(_) => return Err(ApiError::StorageUnavailable(too_slow())),
    }
    Ok(HttpResponse::Ok().json(HEALTHY))
}

/// The readiness probe's state: how long Postgres and the storage may take to answer
/// (`health.timeout_ms`, both asked at once), so that one that hangs is told within it.
pub struct Health {
    pub timeout: Duration,
}

fn too_slow() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no answer within health.timeout_ms",
    )
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("could not reach {0}")]
    Unreachable(String, #[source] reqwest::Error),
    #[error("{0} answered {1}")]
    NotReady(String, reqwest::StatusCode),
}

/// `intake healthcheck`: asks the server on this machine whether it is ready. Made for
/// container health checks, where no curl or shell may exist.
pub async fn check_local(server: &ServerSettings) -> Result<(), CheckError> {
    let host = match server.host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        host => host,
    };
    let url = format!("http://{host}:{}{READY_PATH}", server.port);
    let unreachable = |e| CheckError::Unreachable(url.clone(), e);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(unreachable)?;
    let response = client.get(&url).send().await.map_err(unreachable)?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => Err(CheckError::NotReady(url, status)),
    }
}

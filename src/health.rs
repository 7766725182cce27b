//! Liveness and readiness probes.

use actix_web::{HttpResponse, http::StatusCode, web};
use serde_json::json;

use crate::{configuration::ServerSettings, error::ApiError, problem, state::AppState};

pub const READY_PATH: &str = "/health/ready";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health/live").route(web::get().to(live)))
        .service(web::resource(READY_PATH).route(web::get().to(ready)));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when Postgres answers and the storage accepts a synced write; otherwise 503, with the
/// failing part's code.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let failure = match sqlx::query("SELECT 1").execute(&state.pool).await {
        Err(error) => Some(ApiError::DatabaseUnavailable(error)),
        Ok(_) => state.storage.probe().await.err().map(ApiError::from),
    };
    match failure {
        None => HttpResponse::Ok().json(json!({"status": "ok"})),
        Some(error) => {
            tracing::warn!(error = %problem::cause_chain(&error), "not ready");
            problem::response(
                StatusCode::SERVICE_UNAVAILABLE,
                error.code(),
                "the service is not ready",
            )
        }
    }
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

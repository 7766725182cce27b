//! Liveness and readiness probes.

use actix_web::{HttpResponse, http::StatusCode, web};
use serde_json::json;

use crate::{error::ApiError, problem, startup::AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
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

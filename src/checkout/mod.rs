//! `POST /checkout`: validate, record the order, charge and email concurrently, record the
//! outcome; with `Idempotency-Key`, a retried request is answered without charging again.

mod orders;
pub mod process;
pub mod providers;
pub mod request;

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header::HeaderValue},
    web,
};
use serde_json::{Value, json};
use uuid::Uuid;

use self::{
    orders::Claim,
    process::{Outcome, PaymentStatus},
    request::Order,
};
use crate::{error::ApiError, problem, startup::AppState};

pub use self::process::Checkout;

const MAX_KEY_LEN: usize = 255;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/checkout").route(web::post().to(checkout)));
}

async fn checkout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let order = request::parse(&body)?;
    let key = idempotency_key(&req)?;
    if let Some(key) = &key {
        match orders::claim(&state.pool, key, &order.fingerprint()).await? {
            Claim::Claimed => {}
            Claim::Replay { status, body } => return Ok(replay(status, body)),
            Claim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
            Claim::InProgress => return Err(ApiError::IdempotencyKeyInUse),
        }
    }
    let state = state.into_inner();
    // Spawned: once a charge may have started, a client hanging up must not stop the order
    // from being recorded and the key from being answered.
    let (status, body) = tokio::spawn(async move {
        let placed = place(&state, &order).await;
        if let Some(key) = &key {
            match &placed {
                Ok((status, body)) => {
                    orders::remember(&state.pool, key, status.as_u16(), body).await?
                }
                Err(_) => {
                    if let Err(error) = orders::release(&state.pool, key).await {
                        tracing::warn!(%error, "could not release an idempotency key");
                    }
                }
            }
        }
        placed
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(respond(status, body))
}

async fn place(state: &AppState, order: &Order) -> Result<(StatusCode, Value), ApiError> {
    let id = Uuid::now_v7();
    orders::insert(&state.pool, id, order).await?;
    let outcome = state.checkout.run(id, order).await;
    orders::complete(&state.pool, id, &outcome).await?;
    tracing::info!(order_id = %id, status = outcome.order_status(), elapsed_ms = outcome.elapsed_ms, "checkout done");
    Ok(render(id, &outcome))
}

/// The answer for an outcome: `201` with the order when paid; otherwise problem+json that
/// carries the same order object under `order`, so that a client can show what happened.
fn render(id: Uuid, outcome: &Outcome) -> (StatusCode, Value) {
    let order = json!({
        "order_id": id,
        "status": outcome.order_status(),
        "payment": outcome.payment,
        "email": outcome.email,
        "elapsed_ms": outcome.elapsed_ms,
    });
    let (status, code, detail) = match outcome.payment.status {
        PaymentStatus::Succeeded => return (StatusCode::CREATED, order),
        PaymentStatus::Declined => (
            StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
            "the payment was declined",
        ),
        PaymentStatus::Failed => (
            StatusCode::BAD_GATEWAY,
            "provider_unavailable",
            "the payment provider failed",
        ),
        PaymentStatus::TimedOut => (
            StatusCode::GATEWAY_TIMEOUT,
            "provider_unavailable",
            "the payment provider did not answer in time",
        ),
    };
    let mut body = problem::body(status, code, detail);
    body.insert("order".into(), order);
    (status, Value::Object(body))
}

fn respond(status: StatusCode, body: Value) -> HttpResponse {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        problem::CONTENT_TYPE
    };
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body.to_string())
}

fn replay(status: u16, body: Value) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, body);
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    response
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

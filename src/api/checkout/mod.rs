//! `POST /checkout`: validate, record the order, charge and email concurrently, record the
//! outcome; with `Idempotency-Key` (scoped to the caller), a retried request is answered without
//! charging again.

mod keys;
mod orders;
pub mod process;
pub mod providers;
pub mod request;

use std::time::Duration;

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header::HeaderValue},
    middleware::from_fn,
    web,
};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use self::{
    keys::KeyHeld,
    orders::Claim,
    process::{EmailReport, Outcome, PaymentReport, PaymentStatus},
    request::Order,
};
pub use self::{keys::KeysInUse, process::Checkout};

use crate::{
    access::auth::{self, Owner},
    api::openapi::{Documented, responses::Authenticated},
    base::{
        error::ApiError,
        problem::{self, Problem},
        telemetry,
    },
};

const MAX_KEY_LEN: usize = 255;
/// The largest order body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The checkout area's own state.
pub struct Checkouts {
    /// The payment and email providers.
    pub providers: Checkout,
    /// The idempotency keys of the checkouts running here.
    pub keys: KeysInUse,
    /// `server.request_body_timeout_secs`: the whole order must arrive within it.
    pub body_timeout: Duration,
}

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/checkout",
            web::resource("/checkout")
                .route(web::post().to(checkout))
                .wrap(from_fn(auth::identify_or_anonymous)),
        )
        .with(__path_checkout),
    );
}

/// An order as placed: `201`'s body, and `order` in the problem of a payment that failed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Placed<'a> {
    order_id: Uuid,
    /// `paid` or `payment_failed`.
    status: &'static str,
    payment: &'a PaymentReport,
    email: &'a EmailReport,
    elapsed_ms: u64,
}

/// A payment that did not succeed: the problem, and the order as it ended.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Unpaid<'a> {
    #[serde(flatten)]
    problem: Problem,
    order: Placed<'a>,
}

/// Place an order: the payment and the confirmation email run concurrently.
///
/// Without a token the order is the anonymous user's. With `Idempotency-Key` (and, when auth is
/// on, a token), a retry with the same body gets the first answer (`Idempotent-Replayed: true`)
/// and never charges twice.
#[utoipa::path(post, path = "/checkout", tag = "checkout", security((), ("token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "up to 255 visible ASCII characters, scoped to the caller; with auth on, only with a token")),
    request_body(content = Order, content_type = "application/json"),
    responses(
        (status = 201, body = Placed, description = "paid",
            headers(("Idempotent-Replayed" = Option<String>))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: the body is not JSON, or the key is not valid"),
        (status = 402, body = Unpaid, content_type = "application/problem+json",
            description = "`payment_declined`; `order` says how the order ended"),
        (status = 408, body = Problem, content_type = "application/problem+json",
            description = "`upload_timeout`: the body came too slowly"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "`idempotency_key_in_use`: a request with this key is running"),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`request_too_large`: over 64 KiB"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request` (with `errors`) or `idempotency_key_reused`"),
        (status = 502, body = Unpaid, content_type = "application/problem+json",
            description = "`provider_unavailable`: the payment provider failed"),
        (status = 504, body = Unpaid, content_type = "application/problem+json",
            description = "`provider_unavailable`: the payment provider did not answer in time"),
        Authenticated,
    ))]
async fn checkout(
    req: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    checkouts: web::Data<Checkouts>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, checkouts.body_timeout).await?;
    let order = request::parse(&body)?;
    let mut order_id = Uuid::now_v7();
    let held = match idempotency_key(&req)? {
        None => None,
        // Callers without a token are all `anonymous`: their keys would meet.
        Some(_) if auth::tokenless(&req) => {
            return Err(ApiError::InvalidRequest(
                "an Idempotency-Key needs a bearer token: callers without one would share their keys"
                    .into(),
            ));
        }
        Some(key) => {
            let held = checkouts
                .keys
                .hold(owner.user_id, key)
                .ok_or(ApiError::IdempotencyKeyInUse)?;
            match orders::claim(&pool, &held, &order.fingerprint(), order_id).await? {
                Claim::Claimed { order_id: claimed } => order_id = claimed,
                Claim::Replay { status, body } => return Ok(replay(status, body)),
                Claim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
                Claim::InProgress => return Err(ApiError::IdempotencyKeyInUse),
            }
            Some(held)
        }
    };
    // Spawned: once a charge may have started, a client hanging up must not stop the order
    // from being recorded and the key from being answered.
    let (status, body) = telemetry::spawn(async move {
        let placed = place(&pool, &checkouts.providers, order_id, &order).await;
        if let Some(held) = &held {
            answer_key(&pool, held, &placed).await?;
        }
        placed.map_err(|unplaced| unplaced.error)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(respond(status, body))
}

/// A checkout that could not be recorded to its end.
struct Unplaced {
    /// Whether the providers may have been called: then only the same order may be retried.
    providers_called: bool,
    error: ApiError,
}

async fn place(
    pool: &PgPool,
    providers: &Checkout,
    id: Uuid,
    order: &Order,
) -> Result<(StatusCode, Value), Unplaced> {
    let failed = |providers_called| {
        move |error: sqlx::Error| Unplaced {
            providers_called,
            error: error.into(),
        }
    };
    orders::insert(pool, id, order)
        .await
        .map_err(failed(false))?;
    let outcome = providers.run(id, order).await;
    orders::complete(pool, id, &outcome)
        .await
        .map_err(failed(true))?;
    tracing::info!(order_id = %id, status = outcome.order_status(), elapsed_ms = outcome.elapsed_ms, "checkout done");
    Ok(render(id, &outcome))
}

/// Records the answer under the key. After a failure the key is given back only if no provider
/// was called; otherwise it keeps its order, so that a retry continues that order with the same
/// provider idempotency key instead of charging again under a new one.
async fn answer_key(
    pool: &PgPool,
    held: &KeyHeld,
    placed: &Result<(StatusCode, Value), Unplaced>,
) -> Result<(), ApiError> {
    match placed {
        Ok((status, body)) => orders::remember(pool, held, status.as_u16(), body).await?,
        Err(Unplaced {
            providers_called: false,
            ..
        }) => {
            if let Err(error) = orders::release(pool, held).await {
                tracing::warn!(%error, "could not release an idempotency key");
            }
        }
        Err(_) => {}
    }
    Ok(())
}

/// Reads the whole body: at most `MAX_BODY_BYTES`, within `deadline`, so that a client sending
/// it slowly cannot hold the request open.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::RequestTooLarge(MAX_BODY_BYTES as u64);
    if crate::api::declared_length(req.headers())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    tokio::time::timeout(deadline, payload.to_bytes_limited(MAX_BODY_BYTES))
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline.as_secs()))?
        .map_err(|_| too_large())?
        .map_err(|error| ApiError::InvalidRequest(format!("the body could not be read: {error}")))
}

/// The answer for an outcome: `201` with the order when paid; otherwise problem+json that
/// carries the same order object under `order`, so that a client can show what happened.
fn render(id: Uuid, outcome: &Outcome) -> (StatusCode, Value) {
    let order = serde_json::to_value(Placed {
        order_id: id,
        status: outcome.order_status(),
        payment: &outcome.payment,
        email: &outcome.email,
        elapsed_ms: outcome.elapsed_ms,
    })
    .expect("an order serializes");
    let error = match outcome.payment.status {
        PaymentStatus::Succeeded => return (StatusCode::CREATED, order),
        PaymentStatus::Declined => ApiError::PaymentDeclined,
        PaymentStatus::Failed => ApiError::PaymentFailed,
        PaymentStatus::TimedOut => ApiError::PaymentTimedOut,
    };
    let (status, mut body) = error.problem();
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
        .filter(|k| (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

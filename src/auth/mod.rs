//! Who a request acts for: bearer tokens, the `anonymous` user when auth is off, and the rate
//! limit keyed by the result.

pub mod store;
pub mod token;

use std::future::{Ready, ready};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::{self, HeaderMap},
    middleware::Next,
    web,
};
use sqlx::PgPool;

use self::store::Caller;
use crate::{error::ApiError, rate_limit::RateKey, startup::AppState};

/// The user every request acts for when auth is off.
pub const ANONYMOUS: &str = "anonymous";

/// The user whose files a request sees. Extracting it refuses requests without a valid token
/// (when auth is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub user_id: i64,
}

pub struct Auth {
    enabled: bool,
    anonymous: Owner,
}

/// What the `Authorization` header turned out to be, left for the `Owner` extractor.
struct Identity(Result<Owner, ApiError>);

impl Auth {
    pub async fn new(enabled: bool, pool: &PgPool) -> Result<Self, sqlx::Error> {
        let anonymous = Owner {
            user_id: store::anonymous_id(pool).await?,
        };
        if !enabled {
            tracing::warn!("auth is off: every request acts as the `{ANONYMOUS}` user");
        }
        Ok(Self { enabled, anonymous })
    }

    /// Whether `owner` may read the account `user_id`: only their own while auth is on, since
    /// accounts hold names and emails.
    pub fn may_see(&self, owner: Owner, user_id: i64) -> bool {
        !self.enabled || owner.user_id == user_id
    }

    async fn identify(&self, headers: &HeaderMap, pool: &PgPool) -> Result<Caller, ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let hash = token::from_header(value.as_bytes()).ok_or(ApiError::InvalidToken)?;
        store::authenticate(pool, hash)
            .await?
            .ok_or(ApiError::InvalidToken)
    }
}

/// The routes whose handlers take an `Owner`: only their tokens are looked up.
const OWNED: [&str; 4] = ["/upload", "/files", "/users", "/checkout"];
/// Owned routes open to callers without a token, who act as the `anonymous` user.
const TOKEN_OPTIONAL: [&str; 1] = ["/checkout"];

fn under(path: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Identifies the caller of a route in `OWNED` and applies the rate limit: per token when the
/// request carries a valid one, per client address otherwise (so failed attempts are limited
/// too, and other routes cost no token lookup). An address whose bucket is empty is refused
/// before its token is looked up, so that a flood of guessed tokens does not reach Postgres.
/// Health checks are exempt: orchestrators must always reach them.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // The path as the router matches it (`%66iles` is `files`), not as sent.
    let path = req.match_info().as_str();
    if path.starts_with("/health/") {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let owned = under(path, &OWNED);
    let anonymous_allowed =
        under(path, &TOKEN_OPTIONAL) && !req.headers().contains_key(header::AUTHORIZATION);
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("the app state is registered");
    let client = state.rate_limit.client_key(&req);
    let limited = match (state.auth.enabled, owned && !anonymous_allowed) {
        (true, true) => match state.rate_limit.check_blocked(client) {
            Err(error) => Err(error),
            Ok(()) => match state.auth.identify(req.headers(), &state.pool).await {
                Ok(caller) => state
                    .rate_limit
                    .check(RateKey::Token(caller.token_id))
                    .map(|()| {
                        Some(Ok(Owner {
                            user_id: caller.user_id,
                        }))
                    }),
                Err(error) => state.rate_limit.check(client).map(|()| Some(Err(error))),
            },
        },
        // No identity: an `Owner` taken outside `OWNED` fails loudly instead of acting as anyone.
        (true, false) if !owned => state.rate_limit.check(client).map(|()| None),
        _ => state
            .rate_limit
            .check(client)
            .map(|()| Some(Ok(state.auth.anonymous))),
    };
    // Answered here rather than returned as an error, so that outer middleware (the request
    // id) still sees a response.
    let identity = match limited {
        Ok(identity) => identity,
        Err(error) => return Ok(req.error_response(error).map_into_right_body()),
    };
    if let Some(identity) = identity {
        req.extensions_mut().insert(Identity(identity));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

impl FromRequest for Owner {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = req.extensions_mut().remove::<Identity>();
        ready(match identity {
            Some(Identity(result)) => result,
            None => Err(ApiError::internal("the auth guard did not run")),
        })
    }
}

//! Who a request acts for: bearer tokens, the `anonymous` user when auth is off, and the rate
//! limits per client address and per token.

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

/// Applies the rate limit and identifies the caller of a route in `OWNED`. Every request draws
/// from its client address's bucket first, before any database work, so that a flood of
/// guessed tokens is refused without reaching Postgres; a request with a valid token then draws
/// from that token's bucket too, so that a token shared by many addresses is limited as a
/// whole. Health checks are exempt: orchestrators must always reach them.
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
    let mut limited = state.rate_limit.check(state.rate_limit.client_key(&req)).err();
    let identity = match (limited.is_some(), state.auth.enabled, owned) {
        (true, _, _) => None,
        (false, true, true) if anonymous_allowed => Some(Ok(state.auth.anonymous)),
        (false, true, true) => match state.auth.identify(req.headers(), &state.pool).await {
            Ok(caller) => {
                limited = state.rate_limit.check(RateKey::Token(caller.token_id)).err();
                Some(Ok(Owner {
                    user_id: caller.user_id,
                }))
            }
            Err(error) => Some(Err(error)),
        },
        // No identity: an `Owner` taken outside `OWNED` fails loudly instead of acting as anyone.
        (false, true, false) => None,
        (false, false, _) => Some(Ok(state.auth.anonymous)),
    };
    // Answered here rather than returned as an error, so that outer middleware (the request
    // id) still sees a response.
    if let Some(error) = limited {
        return Ok(req.error_response(error).map_into_right_body());
    }
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

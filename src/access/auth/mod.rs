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
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{
    access::{
        rate_limit::{self, RateKey, RateLimit},
        upload_slots::Caller,
    },
    base::error::ApiError,
};

/// The user every request acts for when auth is off.
pub const ANONYMOUS: &str = "anonymous";

/// The user whose files a request sees. Extracting it refuses requests without a valid token
/// (when auth is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub user_id: i64,
}

/// The access guard's state: whether tokens are required, and the token store.
pub struct Auth {
    enabled: bool,
    anonymous: Owner,
    pool: PgPool,
}

/// What the `Authorization` header turned out to be, left for the `Owner` extractor.
struct Identity(Result<Owner, ApiError>);

/// Marks a request let in as `anonymous` without a token although auth is on (`/checkout`).
struct Tokenless;

/// Whether the request acts as `anonymous` for want of a token while auth is on: it shares
/// whatever `anonymous` holds with every other caller without one.
pub fn tokenless(req: &HttpRequest) -> bool {
    req.extensions().contains::<Tokenless>()
}

impl Auth {
    pub async fn new(enabled: bool, pool: PgPool) -> Result<Self, sqlx::Error> {
        let anonymous = Owner {
            user_id: store::anonymous_id(&pool).await?,
        };
        if !enabled {
            tracing::warn!(
                "auth is off: every request acts as the `{ANONYMOUS}` user, and only requests to localhost (or server.allowed_hosts) are served"
            );
        }
        Ok(Self {
            enabled,
            anonymous,
            pool,
        })
    }

    /// Whether `owner` may read the account `user_id`: only their own while auth is on, since
    /// accounts hold names and emails.
    pub fn may_see(&self, owner: Owner, user_id: i64) -> bool {
        !self.enabled || owner.user_id == user_id
    }

    async fn identify(&self, headers: &HeaderMap) -> Result<store::Caller, ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let hash = token::from_header(value.as_bytes()).ok_or(ApiError::InvalidToken)?;
        store::authenticate(&self.pool, hash)
            .await?
            .ok_or(ApiError::InvalidToken)
    }
}

/// Middleware for every route whose handlers take an `Owner`: identifies the caller by their
/// bearer token (or as `anonymous` with auth off) and draws the request from the caller's
/// bucket. Wrapped around each owned resource, so that identity is part of the route and an
/// `Owner` outside one fails loudly instead of acting as anyone.
pub async fn identify(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    identify_then(req, next, TokenRequired::Yes).await
}

/// As `identify`, but a request without an `Authorization` header acts as `anonymous` (checkout).
pub async fn identify_or_anonymous(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    identify_then(req, next, TokenRequired::No).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenRequired {
    Yes,
    No,
}

/// A request with a valid token draws from the token's bucket; any other from its client
/// address's, so that failed attempts are limited too. An address whose bucket is empty is
/// refused before its token is looked up, so that a flood of guessed tokens never reaches
/// Postgres.
async fn identify_then(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    required: TokenRequired,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let auth = req
        .app_data::<web::Data<Auth>>()
        .expect("the access guard's state is registered");
    let limit = req
        .app_data::<web::Data<RateLimit>>()
        .expect("the rate limiter is registered");
    let tokenless = auth.enabled && !req.headers().contains_key(header::AUTHORIZATION);
    let found = identity(auth, limit, &req, required).await;
    let checked = found.map(|(identity, caller)| {
        let mut extensions = req.extensions_mut();
        extensions.insert(identity);
        if let Some(caller) = caller {
            extensions.insert(caller);
        }
        if tokenless {
            extensions.insert(Tokenless);
        }
    });
    rate_limit::continue_unless_refused(req, next, checked).await
}

/// Who the request acts for, once its bucket has a request left for it, and whose upload slots
/// it takes (none when it was not identified).
async fn identity(
    auth: &Auth,
    limit: &RateLimit,
    req: &ServiceRequest,
    required: TokenRequired,
) -> Result<(Identity, Option<Caller>), ApiError> {
    let client = limit.client_key(req);
    let anonymous = !auth.enabled
        || (required == TokenRequired::No && !req.headers().contains_key(header::AUTHORIZATION));
    if anonymous {
        limit.check(client)?;
        let address = match client {
            RateKey::Client(address) => address,
            RateKey::Token(_) => None,
        };
        return Ok((Identity(Ok(auth.anonymous)), Some(Caller::Address(address))));
    }
    limit.check_blocked(client)?;
    match auth.identify(req.headers()).await {
        Ok(found) => {
            limit.check(RateKey::Token(found.token_id))?;
            let owner = Owner {
                user_id: found.user_id,
            };
            Ok((Identity(Ok(owner)), Some(Caller::User(found.user_id))))
        }
        Err(error) => {
            limit.check(client)?;
            Ok((Identity(Err(error)), None))
        }
    }
}

/// Checks a request's bearer credentials against a configured secret (`telemetry.metrics_token`)
/// rather than the token store. Digests are compared, so that the comparison takes as long
/// whatever the guess.
pub fn check_secret(headers: &HeaderMap, secret: &SecretString) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let given = token::bearer(given.as_bytes()).ok_or(ApiError::InvalidToken)?;
    if Sha256::digest(given) != Sha256::digest(secret.expose_secret()) {
        return Err(ApiError::InvalidToken);
    }
    Ok(())
}

impl FromRequest for Owner {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = req.extensions_mut().remove::<Identity>();
        ready(match identity {
            Some(Identity(result)) => result,
            None => Err(ApiError::internal(
                "a handler takes an Owner on a route not wrapped in auth::identify",
            )),
        })
    }
}

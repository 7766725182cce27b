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
    catalog::{
        links,
        upload_links::{self, UploadLink},
    },
};

/// The user every request acts for when auth is off.
pub const ANONYMOUS: &str = "anonymous";

/// The header that carries an upload link's secret on the tus routes, for a client without a
/// token.
pub const UPLOAD_LINK: &str = "upload-link";

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

/// As `identify`, but a request that holds an upload link's secret (the route's `{secret}`, or
/// without an `Authorization` header the `Upload-Link` header) acts for the link's creator,
/// and reaches only the uploads made through that link (the route's `{id}`). The link comes to
/// the handler as `web::ReqData<UploadLink>`.
pub async fn identify_or_link(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    identify_then(req, next, TokenRequired::OrLink).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenRequired {
    Yes,
    No,
    /// Or an upload link's secret.
    OrLink,
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
    let checked = found.map(|(identity, caller, link)| {
        let mut extensions = req.extensions_mut();
        extensions.insert(identity);
        if let Some(caller) = caller {
            extensions.insert(caller);
        }
        if let Some(link) = link {
            extensions.insert(link);
        }
        if tokenless {
            extensions.insert(Tokenless);
        }
    });
    rate_limit::continue_unless_refused(req, next, checked).await
}

/// Who the request acts for, once its bucket has a request left for it, whose upload slots it
/// takes (none when it was not identified), and the upload link it came through.
async fn identity(
    auth: &Auth,
    limit: &RateLimit,
    req: &ServiceRequest,
    required: TokenRequired,
) -> Result<(Identity, Option<Caller>, Option<UploadLink>), ApiError> {
    let client = limit.client_key(req);
    let address = match client {
        RateKey::Client(address) => address,
        RateKey::Token(_) => None,
    };
    if required == TokenRequired::OrLink
        && let Some(secret) = link_secret(req)
    {
        limit.check(client)?;
        let caller = Some(Caller::Address(address));
        return Ok(match through_link(auth, req, secret).await? {
            Ok(link) => {
                let owner = Owner {
                    user_id: link.owner,
                };
                (Identity(Ok(owner)), caller, Some(link))
            }
            Err(refused) => (Identity(Err(refused)), caller, None),
        });
    }
    let anonymous = !auth.enabled
        || (required == TokenRequired::No && !req.headers().contains_key(header::AUTHORIZATION));
    if anonymous {
        limit.check(client)?;
        return Ok((
            Identity(Ok(auth.anonymous)),
            Some(Caller::Address(address)),
            None,
        ));
    }
    limit.check_blocked(client)?;
    match auth.identify(req.headers()).await {
        Ok(found) => {
            limit.check(RateKey::Token(found.token_id))?;
            let owner = Owner {
                user_id: found.user_id,
            };
            Ok((Identity(Ok(owner)), Some(Caller::User(found.user_id)), None))
        }
        Err(error) => {
            limit.check(client)?;
            Ok((Identity(Err(error)), None, None))
        }
    }
}

/// The upload link's secret a request holds: its route's `{secret}` (whatever else it
/// carries), or a non-empty `Upload-Link` header on a request without `Authorization`.
fn link_secret(req: &ServiceRequest) -> Option<&str> {
    if let Some(secret) = req.match_info().get("secret") {
        return Some(secret);
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return None;
    }
    let value = req.headers().get(UPLOAD_LINK)?.to_str().ok()?;
    Some(value.trim()).filter(|secret| !secret.is_empty())
}

/// The live upload link `secret` opens, if the upload the route names (`{id}`, if any) came
/// through it; else why not: an unknown or revoked link (or someone else's upload) is `404`,
/// an expired one `410`.
async fn through_link(
    auth: &Auth,
    req: &ServiceRequest,
    secret: &str,
) -> Result<Result<UploadLink, ApiError>, ApiError> {
    let unknown = ApiError::NotFound("upload link");
    let Some(hash) = links::secret_hash(secret) else {
        return Ok(Err(unknown));
    };
    let Some(link) = upload_links::by_secret(&auth.pool, &hash).await? else {
        return Ok(Err(unknown));
    };
    if link.expired() {
        return Ok(Err(ApiError::LinkExpired));
    }
    if let Some(id) = req.match_info().get("id") {
        let ours = match uuid::Uuid::try_parse(id) {
            Ok(id) => upload_links::came_through(&auth.pool, link.id, id).await?,
            Err(_) => false,
        };
        if !ours {
            return Ok(Err(ApiError::NotFound("upload")));
        }
    }
    Ok(Ok(link))
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

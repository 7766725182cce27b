//! Request rate limits: one GCRA bucket (the `governor` crate) per token or client address.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::base::{configuration::RateLimitSettings, error::ApiError};

/// Whose bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKey {
    Token(Uuid),
    Client(Option<IpAddr>),
}

pub struct RateLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<RateKey>>>,
    /// Client addresses whose bucket was found empty, until when: refused without a look at
    /// their token.
    blocked: Arc<DashMap<RateKey, Instant>>,
    trust_forwarded_for: bool,
}

impl RateLimit {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limiter = NonZeroU32::new(settings.per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
            let period = Duration::from_secs(60) / per_minute.get();
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                .allow_burst(burst);
            Arc::new(DefaultKeyedRateLimiter::keyed(quota))
        });
        Self {
            limiter,
            blocked: Arc::default(),
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }

    /// The bucket of a request without a valid token: its client's address.
    pub fn client_key(&self, req: &ServiceRequest) -> RateKey {
        let address = if self.trust_forwarded_for {
            req.connection_info()
                .realip_remote_addr()
                .and_then(parse_address)
        } else {
            req.peer_addr().map(|peer| peer.ip())
        };
        RateKey::Client(address)
    }

    /// Takes one request from the key's bucket, or says how long until one is free.
    pub fn check(&self, key: RateKey) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            if let RateKey::Client(_) = key {
                self.blocked.insert(key, Instant::now() + wait);
            }
            limited(wait)
        })
    }

    /// Refuses, without taking from its bucket, a client address whose bucket was found empty
    /// and has not refilled since: the check made before any database work.
    pub fn check_blocked(&self, key: RateKey) -> Result<(), ApiError> {
        let Some(until) = self.blocked.get(&key).map(|until| *until) else {
            return Ok(());
        };
        match until.checked_duration_since(Instant::now()) {
            Some(wait) if !wait.is_zero() => Err(limited(wait)),
            _ => Ok(()),
        }
    }

    /// Forgets, every `interval`, the buckets that have refilled, so that memory follows the
    /// number of recent clients rather than of every client ever seen.
    pub fn spawn_pruning(&self, interval: Duration) -> Option<JoinHandle<()>> {
        let limiter = Arc::clone(self.limiter.as_ref()?);
        let blocked = Arc::clone(&self.blocked);
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                limiter.retain_recent();
                limiter.shrink_to_fit();
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                blocked.shrink_to_fit();
            }
        }))
    }
}

/// Middleware for routes that hold no files or accounts: each request draws from its client
/// address's bucket, and no token is looked up. (Owned routes are limited by `auth::identify`,
/// which knows the caller.)
pub async fn by_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<RateLimit>>()
        .expect("the rate limiter is registered");
    let checked = limit.check(limit.client_key(&req));
    continue_unless_refused(req, next, checked).await
}

/// Calls the rest of the chain, or answers a refusal here rather than returning it as an error,
/// so that outer middleware (the request id) still sees a response.
pub async fn continue_unless_refused(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    checked: Result<(), ApiError>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match checked {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(refused) => Ok(req.error_response(refused).map_into_right_body()),
    }
}

fn limited(wait: Duration) -> ApiError {
    ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// `realip_remote_addr` is an address with or without a port (`[v6]:port` too).
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| {
        text.parse::<std::net::SocketAddr>()
            .ok()
            .map(|socket| socket.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_minute: u32, burst: u32) -> RateLimitSettings {
        RateLimitSettings {
            per_minute,
            burst,
            trust_forwarded_for: false,
        }
    }

    #[test]
    fn a_burst_passes_then_each_key_is_limited_on_its_own() {
        let limit = RateLimit::new(&settings(1, 2));
        let alice = RateKey::Token(Uuid::now_v7());
        let bob = RateKey::Token(Uuid::now_v7());
        assert!(limit.check(alice).is_ok());
        assert!(limit.check(alice).is_ok());
        let Err(ApiError::RateLimited(retry_after)) = limit.check(alice) else {
            panic!("the third request within a minute is limited");
        };
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(limit.check(bob).is_ok());
    }

    #[test]
    fn an_address_found_over_its_limit_is_blocked_without_drawing_more() {
        let limit = RateLimit::new(&settings(1, 1));
        let client = RateKey::Client("10.0.0.7".parse().ok());
        assert!(limit.check_blocked(client).is_ok());
        assert!(limit.check(client).is_ok());
        assert!(limit.check_blocked(client).is_ok(), "not yet found empty");
        assert!(limit.check(client).is_err());
        assert!(matches!(
            limit.check_blocked(client),
            Err(ApiError::RateLimited(1..=60))
        ));
        let token = RateKey::Token(Uuid::now_v7());
        assert!(limit.check(token).is_ok() && limit.check(token).is_err());
        assert!(
            limit.check_blocked(token).is_ok(),
            "only addresses are blocked"
        );
    }

    #[test]
    fn zero_per_minute_means_no_limit() {
        let limit = RateLimit::new(&settings(0, 1));
        let key = RateKey::Client(None);
        assert!((0..10_000).all(|_| limit.check(key).is_ok()));
    }

    #[test]
    fn forwarded_addresses_parse_with_or_without_a_port() {
        assert_eq!(parse_address("10.0.0.7"), "10.0.0.7".parse().ok());
        assert_eq!(parse_address("10.0.0.7:5000"), "10.0.0.7".parse().ok());
        assert_eq!(parse_address("[::1]:80"), "::1".parse().ok());
        assert_eq!(parse_address("not an address"), None);
    }
}

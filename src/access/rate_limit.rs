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
    http::header::HeaderMap,
    middleware::Next,
    web,
};
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use ipnet::IpNet;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::base::{
    configuration::{ForwardedHeader, RateLimitSettings},
    error::ApiError,
};

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
    /// Where a request's client address comes from.
    clients: ClientAddress,
}

/// How a request's client address is told: its peer's, or, behind proxies, the right-most entry
/// of the forwarded header that no trusted proxy added. Entries to its left are whatever the
/// client wrote, and are never believed.
#[derive(Debug, Clone)]
struct ClientAddress {
    /// `None`: the peer's address, headers ignored.
    forwarded: Option<ForwardedHeader>,
    /// Empty: one proxy, the peer.
    trusted: Vec<IpNet>,
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
            clients: ClientAddress {
                forwarded: settings
                    .trust_forwarded_for
                    .then_some(settings.forwarded_header),
                trusted: settings.trusted_proxies.clone(),
            },
        }
    }

    /// The bucket of a request without a valid token: its client's address.
    pub fn client_key(&self, req: &ServiceRequest) -> RateKey {
        let peer = req.peer_addr().map(|peer| peer.ip());
        RateKey::Client(self.clients.of(peer, req.headers()))
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

impl ClientAddress {
    fn of(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let Some(header) = self.forwarded else {
            return peer;
        };
        let is_trusted = |address: &IpAddr| self.trusted.iter().any(|net| net.contains(address));
        // A request that does not come through a trusted proxy wrote its header itself.
        if !self.trusted.is_empty() && !peer.as_ref().is_some_and(is_trusted) {
            return peer;
        }
        let entries = forwarded_entries(header, headers);
        let client = match self.trusted.is_empty() {
            // One proxy: the entry it appended, the last.
            true => entries.last(),
            // The first from the right that no trusted proxy added; all of them trusted: the
            // request began inside, at the first.
            false => entries
                .iter()
                .rev()
                .find(|entry| entry.is_none_or(|address| !is_trusted(&address)))
                .or(entries.first()),
        };
        // An entry that is not an address (`unknown`, an obfuscated name) names no one we can
        // key by: the proxy's bucket then.
        client.copied().flatten().or(peer)
    }
}

/// Every entry of the header, in order, across repeated headers; `None` where an entry is not
/// an address.
fn forwarded_entries(header: ForwardedHeader, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let values = headers
        .get_all(name)
        .filter_map(|value| value.to_str().ok());
    let elements = values.flat_map(|value| value.split(','));
    match header {
        ForwardedHeader::XForwardedFor => elements.map(parse_address).collect(),
        ForwardedHeader::Forwarded => elements
            .map(|element| {
                let node = element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then_some(value)
                });
                node.and_then(|node| parse_address(node.trim_matches('"')))
            })
            .collect(),
    }
}

/// An address with or without a port (`[v6]:port` too).
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
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
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
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

    fn client(
        forwarded: Option<ForwardedHeader>,
        trusted: &[&str],
        peer: &str,
    ) -> impl Fn(&[(&str, &str)]) -> Option<IpAddr> {
        let clients = ClientAddress {
            forwarded,
            trusted: trusted.iter().map(|net| net.parse().unwrap()).collect(),
        };
        let peer = peer.parse().ok();
        move |sent| {
            let mut headers = HeaderMap::new();
            for (name, value) in sent {
                headers.append(
                    actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            clients.of(peer, &headers)
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn without_trusting_a_proxy_the_peer_is_the_client_whatever_the_headers_say() {
        let of = client(None, &[], "192.0.2.1");
        assert_eq!(of(&[("x-forwarded-for", "203.0.113.7")]), ip("192.0.2.1"));
        assert_eq!(of(&[("forwarded", "for=203.0.113.7")]), ip("192.0.2.1"));
    }

    #[test]
    fn behind_one_proxy_the_client_is_the_entry_it_appended_not_what_the_client_wrote() {
        let xff = client(Some(ForwardedHeader::XForwardedFor), &[], "127.0.0.1");
        assert_eq!(
            xff(&[("x-forwarded-for", "10.1.7.9, 198.51.100.9")]),
            ip("198.51.100.9")
        );
        assert_eq!(
            xff(&[("x-forwarded-for", "203.0.113.7")]),
            ip("203.0.113.7")
        );
        // Headers repeated are one list, in order.
        let repeated = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.9"),
        ];
        assert_eq!(xff(&repeated), ip("198.51.100.9"));
        assert_eq!(xff(&[("x-forwarded-for", "unknown")]), ip("127.0.0.1"));
        assert_eq!(xff(&[]), ip("127.0.0.1"));
        // `Forwarded` is read only when it is the header configured.
        assert_eq!(xff(&[("forwarded", "for=203.0.113.7")]), ip("127.0.0.1"));
        let forwarded = client(Some(ForwardedHeader::Forwarded), &[], "127.0.0.1");
        let sent = [(
            "forwarded",
            r#"for=203.0.113.7, for="[2001:db8::1]:4711";proto=https"#,
        )];
        assert_eq!(forwarded(&sent), ip("2001:db8::1"));
    }

    #[test]
    fn behind_trusted_proxies_their_entries_are_skipped_and_others_are_not_believed() {
        let of = client(
            Some(ForwardedHeader::XForwardedFor),
            &["10.0.0.0/8", "127.0.0.1/32"],
            "10.0.0.2",
        );
        let sent = [(
            "x-forwarded-for",
            "203.0.113.7, 198.51.100.9, 10.0.0.5, 127.0.0.1",
        )];
        assert_eq!(of(&sent), ip("198.51.100.9"));
        assert_eq!(
            of(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]),
            ip("10.0.0.9")
        );
        // A request that comes from outside wrote its header itself.
        let direct = client(
            Some(ForwardedHeader::XForwardedFor),
            &["10.0.0.0/8"],
            "192.0.2.1",
        );
        assert_eq!(
            direct(&[("x-forwarded-for", "203.0.113.7")]),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn forwarded_addresses_parse_with_or_without_a_port() {
        assert_eq!(parse_address("10.0.0.7"), "10.0.0.7".parse().ok());
        assert_eq!(parse_address("10.0.0.7:5000"), "10.0.0.7".parse().ok());
        assert_eq!(parse_address("[::1]:80"), "::1".parse().ok());
        assert_eq!(parse_address("not an address"), None);
    }
}

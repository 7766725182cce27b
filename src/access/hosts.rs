//! What auth off may be reached as. With auth off any request acts as `anonymous`, so a web
//! page on any site could drive the API through a visitor's browser by DNS rebinding (its name
//! made to point at 127.0.0.1): the browser then sends the page's own name as `Host`. With auth
//! off, requests are served only when addressed to a loopback name or address (`localhost`,
//! `*.localhost`, `127.0.0.0/8`, `::1`) or to a host listed in `server.allowed_hosts`. With auth
//! on a token is needed anyway, and any host is served. `/health/*` is always served (probes
//! address a container by its IP).

use std::net::IpAddr;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, uri::Authority},
    middleware::Next,
    web,
};

use crate::{access::rate_limit, base::error::ApiError};

/// The hosts requests may be addressed to; `None`: any (auth is on).
pub struct Hosts {
    allowed: Option<Vec<String>>,
}

impl Hosts {
    pub fn new(auth_enabled: bool, allowed_hosts: &[String]) -> Self {
        let allowed = allowed_hosts.iter().map(|host| host.to_ascii_lowercase());
        Self {
            allowed: (!auth_enabled).then(|| allowed.collect()),
        }
    }

    fn allows(&self, authority: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some(host) = authority.and_then(|value| value.parse::<Authority>().ok()) else {
            return false;
        };
        let host = host.host().trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let loopback = match host.parse::<IpAddr>() {
            Ok(address) => address.is_loopback(),
            Err(_) => host == "localhost" || host.ends_with(".localhost"),
        };
        loopback || allowed.contains(&host)
    }
}

/// Middleware around every route: refuses, with auth off, a request addressed to a host that is
/// neither loopback nor allowed (`403 host_not_allowed`).
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let hosts = req
        .app_data::<web::Data<Hosts>>()
        .expect("the allowed hosts are registered");
    let authority = match req.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok()),
    };
    let checked = match req.path().starts_with("/health/") || hosts.allows(authority) {
        true => Ok(()),
        false => Err(ApiError::HostNotAllowed(
            authority.unwrap_or_default().to_owned(),
        )),
    };
    rate_limit::continue_unless_refused(req, next, checked).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_off_serves_loopback_and_listed_hosts_only() {
        let hosts = Hosts::new(false, &["Files.Example.com".into()]);
        for served in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:8080",
            "app.localhost:3000",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "files.example.com",
            "files.example.com:8443",
        ] {
            assert!(hosts.allows(Some(served)), "{served}");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example:8080",
            "192.168.1.20:8080",
            "0.0.0.0:8080",
            "[::2]",
            "",
            "not a host",
        ] {
            assert!(!hosts.allows(Some(refused)), "{refused}");
        }
        assert!(!hosts.allows(None));
    }

    #[test]
    fn auth_on_serves_any_host() {
        let hosts = Hosts::new(true, &[]);
        assert!(hosts.allows(Some("evil.example")));
        assert!(hosts.allows(None));
    }
}

//! Rate limits: one bucket per token, one per client address for everything else; an address
//! found over its limit is refused before any token lookup.

use intake::base::configuration::{ForwardedHeader, RateLimitSettings};

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

async fn spawn_limited(auth: bool, burst: u32) -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = auth;
        // One request a minute after the burst: no test runs long enough to see a refill.
        s.rate_limit.per_minute = 1;
        s.rate_limit.burst = burst;
    })
    .await
}

impl TestApp {
    async fn list_as(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url("/files"));
        if let Some(token) = authorization {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }
}

async fn assert_limited(response: reqwest::Response) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(response.headers().contains_key("x-request-id"));
    assert_problem(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn each_token_has_its_own_bucket_and_429_says_when_to_retry() {
    let app = spawn_limited(true, 3).await;
    let alice = app.user_with_token("alice").await;
    let bob = app.user_with_token("bob").await;
    for _ in 0..3 {
        assert_eq!(app.list_as(Some(&alice)).await.status(), 200);
    }
    assert_limited(app.list_as(Some(&alice)).await).await;
    assert_eq!(app.list_as(Some(&bob)).await.status(), 200);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_limited_by_address_and_health_never_is() {
    let app = spawn_limited(true, 2).await;
    let alice = app.user_with_token("alice").await;
    for _ in 0..2 {
        assert_problem(app.list_as(None).await, 401, "unauthorized").await;
    }
    // A made-up token draws from the same bucket: guessing is limited too.
    assert_limited(app.list_as(Some("intake_guess")).await).await;
    assert_limited(app.list_as(None).await).await;
    // Until the address's bucket refills, even a valid token from it is not looked up.
    assert_limited(app.list_as(Some(&alice)).await).await;
    for _ in 0..5 {
        assert_eq!(app.get("/health/live").await.status(), 200);
    }
}

#[tokio::test]
async fn with_auth_off_every_route_but_health_is_limited_by_address() {
    let app = spawn_limited(false, 2).await;
    assert_eq!(app.get("/ping").await.status(), 200);
    assert_eq!(app.list_as(None).await.status(), 200);
    assert_limited(app.get("/ping").await).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
}

#[tokio::test]
async fn an_address_over_its_limit_is_refused_before_any_token_lookup() {
    let app = spawn_limited(true, 2).await;
    // Well-formed but unknown: only the database can tell.
    let guess = format!("intake_{}", "A".repeat(43));
    for _ in 0..2 {
        assert_problem(app.list_as(Some(&guess)).await, 401, "unauthorized").await;
    }
    assert_limited(app.list_as(Some(&guess)).await).await;

    // A lookup now would answer 503: the refusal comes before it.
    app.set_connections_allowed(false).await;
    let refused = app.list_as(Some(&guess)).await;
    app.set_connections_allowed(true).await;
    assert_limited(refused).await;
}

#[tokio::test]
async fn routes_without_files_look_no_token_up_and_limit_by_address() {
    let app = spawn_limited(true, 2).await;
    let alice = app.user_with_token("alice").await;
    let ping = || app.client.get(app.url("/ping")).bearer_auth(&alice).send();
    // A token lookup now would answer 503: none is made.
    app.set_connections_allowed(false).await;
    for _ in 0..2 {
        assert_eq!(ping().await.unwrap().status(), 200);
    }
    // The address's bucket, not alice's: her token was never used.
    assert_limited(ping().await.unwrap()).await;
    app.set_connections_allowed(true).await;
}

#[tokio::test]
async fn resumable_upload_requests_draw_from_the_tokens_bucket_too() {
    let app = spawn_limited(true, 3).await;
    let alice = app.user_with_token("alice").await;
    let tus = crate::tus::Tus::of(&app).with_token(&alice);
    let path = tus.created(10, "limited.bin").await;
    assert_eq!(tus.patch(&path, 0, "01234").await.status(), 204);
    assert_eq!(tus.head(&path).await.status(), 200);

    assert_limited(tus.patch(&path, 5, "56789").await).await;
}

/// Two requests a minute per bucket, behind proxies as `customize` says.
async fn spawn_behind_proxies(customize: impl FnOnce(&mut RateLimitSettings)) -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.rate_limit.per_minute = 1;
        s.rate_limit.burst = 2;
        s.rate_limit.trust_forwarded_for = true;
        customize(&mut s.rate_limit);
    })
    .await
}

/// `GET /files` with `token`, and `header` as the proxies pass it on.
async fn list_forwarded(app: &TestApp, token: &str, header: (&str, String)) -> reqwest::Response {
    let request = app.client.get(app.url("/files")).bearer_auth(token);
    request.header(header.0, header.1).send().await.unwrap()
}

/// Two guessed tokens under two made-up addresses are refused as such; the third guess finds
/// the bucket of the client the proxies named empty.
async fn assert_guesses_share_a_bucket(app: &TestApp, header: &str, forwarded: fn(&str) -> String) {
    for i in 0..2 {
        let guess = (header, forwarded(&format!("10.1.0.{i}")));
        assert_problem(
            list_forwarded(app, "intake_guess", guess).await,
            401,
            "unauthorized",
        )
        .await;
    }
    assert_limited(list_forwarded(app, "intake_guess", (header, forwarded("10.1.0.99"))).await)
        .await;
}

/// Behind a proxy, a client writes what it likes to the left of what the proxy appends: guessing
/// tokens under made-up addresses still empties the client's own bucket, and naming someone
/// else's address does not lock them out.
#[tokio::test]
async fn behind_a_proxy_only_the_address_the_proxy_appended_counts() {
    let app = spawn_behind_proxies(|_| {}).await;
    let victim = app.user_with_token("victim").await;
    // As the proxy forwards them: what the attacker wrote, then the attacker's own address.
    let from_attacker = |spoofed: &str| format!("{spoofed}, 198.51.100.9");
    assert_guesses_share_a_bucket(&app, "X-Forwarded-For", from_attacker).await;
    for _ in 0..3 {
        let naming_the_victim = ("X-Forwarded-For", from_attacker("203.0.113.7"));
        assert_limited(list_forwarded(&app, "intake_guess", naming_the_victim).await).await;
    }

    let victims = list_forwarded(&app, &victim, ("X-Forwarded-For", "203.0.113.7".into())).await;
    assert_eq!(
        victims.status(),
        200,
        "the named address keeps its own bucket"
    );
}

/// Behind a chain of trusted proxies, the client is the right-most `Forwarded` entry that none
/// of them added.
#[tokio::test]
async fn behind_trusted_proxies_the_first_untrusted_forwarded_entry_counts() {
    let app = spawn_behind_proxies(|limit| {
        limit.forwarded_header = ForwardedHeader::Forwarded;
        limit.trusted_proxies = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    })
    .await;
    let chain =
        |spoofed: &str| format!("for={spoofed}, for=198.51.100.9;proto=https, for=10.0.0.5");
    assert_guesses_share_a_bucket(&app, "Forwarded", chain).await;
}

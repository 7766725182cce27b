//! `GET /metrics`: the numbers move as the requests made say they should. The server runs as
//! its own process, so that its counters are only this test's (a process has one recorder).

use std::collections::HashMap;

use reqwest::{Client, multipart};
use serde_json::json;
use uuid::Uuid;

use crate::{
    child::ChildServer,
    helpers::{assert_problem, file_part, random_bytes, spawn_app, spawn_app_with},
};

const SCRAPER: &str = "scrape-secret";

/// Every sample of a scrape, by series (`name{labels}`).
async fn scrape(client: &Client, server: &ChildServer) -> HashMap<String, f64> {
    let response = client
        .get(server.url("/metrics"))
        .bearer_auth(SCRAPER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

struct Moved {
    before: HashMap<String, f64>,
    after: HashMap<String, f64>,
}

impl Moved {
    fn by(&self, series: &str) -> f64 {
        let value = |samples: &HashMap<String, f64>| samples.get(series).copied().unwrap_or(0.0);
        value(&self.after) - value(&self.before)
    }
}

#[tokio::test]
async fn metrics_count_requests_uploads_refusals_checkouts_and_auth() {
    let db = spawn_app().await;
    let token = db.user_with_token("alice").await;
    let root = tempfile::tempdir().unwrap();
    let server = ChildServer::start(
        &db.db_url(),
        root.path(),
        &[
            ("APP__TELEMETRY__METRICS_TOKEN", SCRAPER),
            ("APP__AUTH__ENABLED", "true"),
            ("APP__UPLOAD__MAX_FILE_BYTES", "1000"),
            // Every file through the storage backend, whose metrics this test reads.
            ("APP__STORAGE__INLINE_MAX_BYTES", "0"),
            ("APP__DATABASE__MAX_CONNECTIONS", "8"),
            ("APP__RATE_LIMIT__BURST", "20"),
            ("APP__RATE_LIMIT__PER_MINUTE", "1"),
            ("APP__CHECKOUT__PAYMENT__SIMULATED_LATENCY_MS", "0"),
            ("APP__CHECKOUT__EMAIL__SIMULATED_LATENCY_MS", "0"),
            ("APP__CHECKOUT__EMAIL__SIMULATED_OUTCOME", "fail"),
        ],
    )
    .await;
    let client = Client::new();

    let unauthenticated = client.get(server.url("/metrics")).send().await.unwrap();
    assert_problem(unauthenticated, 401, "unauthorized").await;
    let wrong = client
        .get(server.url("/metrics"))
        .bearer_auth("not-the-secret")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401, "unauthorized").await;

    let before = scrape(&client, &server).await;
    let upload = |bytes: Vec<u8>| {
        client
            .post(server.url("/upload"))
            .bearer_auth(&token)
            .multipart(multipart::Form::new().part("file", file_part("a.bin", bytes, None)))
            .send()
    };
    for seed in 0..2 {
        assert_eq!(upload(random_bytes(300, seed)).await.unwrap().status(), 201);
    }
    assert_problem(
        upload(random_bytes(2000, 3)).await.unwrap(),
        413,
        "file_too_large",
    )
    .await;
    let anonymous = client
        .post(server.url("/upload"))
        .multipart(multipart::Form::new().part("file", file_part("a.bin", vec![1; 10], None)))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;
    let missing = client
        .get(server.url(&format!("/files/{}", Uuid::now_v7())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "not_found").await;
    let checkout = client
        .post(server.url("/checkout"))
        .bearer_auth(&token)
        .json(&json!({
            "customer_email": "a@example.com",
            "amount_cents": 1299,
            "currency": "EUR",
            "items": [{"sku": "BOOK-1", "quantity": 1}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(checkout.status(), 201);
    // The address's bucket (burst 20, one more a minute): /ping until it refuses once.
    let mut pings = 0;
    loop {
        let status = client
            .get(server.url("/ping"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 429 {
            break;
        }
        assert_eq!(status, 200);
        pings += 1;
        assert!(pings <= 25, "the rate limit never refused");
    }
    let after = scrape(&client, &server).await;
    let moved = Moved { before, after };

    let requests = |method: &str, route: &str, status: &str| {
        moved.by(&format!(
            r#"intake_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
        ))
    };
    assert_eq!(requests("POST", "/upload", "2xx"), 2.0);
    assert_eq!(requests("POST", "/upload", "4xx"), 2.0);
    assert_eq!(requests("GET", "/files/{id}", "4xx"), 1.0);
    assert_eq!(requests("POST", "/checkout", "2xx"), 1.0);
    assert_eq!(requests("GET", "/ping", "2xx"), f64::from(pings));
    assert_eq!(requests("GET", "/ping", "4xx"), 1.0);
    // The first scrape is counted once it has answered.
    assert_eq!(requests("GET", "/metrics", "2xx"), 1.0);
    assert_eq!(
        moved.by(r#"intake_http_request_duration_seconds_count{method="POST",route="/upload"}"#),
        4.0
    );

    assert_eq!(
        moved.by(r#"intake_uploads_refused_total{code="file_too_large"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_uploads_refused_total{code="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_files_stored_total{protocol="multipart"}"#),
        2.0
    );
    // The two files and the oversize part up to the chunk that crossed the limit; the anonymous
    // upload was refused before its body was read.
    let received = moved.by("intake_upload_bytes_total");
    assert!(
        (600.0 + 1001.0..=600.0 + 2000.0).contains(&received),
        "bytes received: {received}"
    );
    assert_eq!(
        moved.by(r#"intake_upload_durable_seconds_count{backend="fs"}"#),
        2.0
    );
    assert_eq!(
        moved.by(
            r#"intake_storage_operation_seconds_count{backend="fs",operation="finish",outcome="ok"}"#
        ),
        2.0
    );

    assert_eq!(
        moved.by(r#"intake_auth_refused_total{code="unauthorized"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_auth_refused_total{code="rate_limited"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_checkout_provider_calls_total{provider="payment",outcome="succeeded"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_checkout_provider_calls_total{provider="email",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        moved.by(r#"intake_checkout_provider_call_seconds_count{provider="email"}"#),
        1.0
    );

    let now = &moved.after;
    // database.max_connections = 8: a quarter for quota bookkeeping, the rest for requests.
    assert_eq!(
        now[r#"intake_db_pool_max_connections{pool="requests"}"#],
        6.0
    );
    assert_eq!(
        now[r#"intake_db_pool_max_connections{pool="bookkeeping"}"#],
        2.0
    );
    assert!(now[r#"intake_db_pool_connections{pool="requests",state="idle"}"#] >= 1.0);
    assert_eq!(now["intake_uploads_in_progress"], 0.0);
    // The start-up sweep.
    assert!(now[r#"intake_sweep_runs_total{outcome="ok"}"#] >= 1.0);
}

#[tokio::test]
async fn metrics_are_never_rate_limited() {
    let app = spawn_app_with(|settings| {
        settings.rate_limit.burst = 1;
        settings.rate_limit.per_minute = 1;
    })
    .await;
    assert_eq!(app.get("/ping").await.status(), 200);
    assert_problem(app.get("/ping").await, 429, "rate_limited").await;
    for _ in 0..5 {
        assert_eq!(app.get("/metrics").await.status(), 200);
    }
}

use intake::base::configuration::{ProviderKind, Settings, SimulatedOutcome};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header_exists, method, path},
};

use crate::helpers::{GENEROUS_TIMEOUT_MS, TestApp, assert_problem, spawn_app_with};

fn order() -> Value {
    json!({
        "customer_email": "a@example.com",
        "amount_cents": 1299,
        "currency": "EUR",
        "items": [{"sku": "BOOK-1", "quantity": 1}]
    })
}

async fn post(app: &TestApp, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/checkout")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

/// Both providers talk HTTP to one mock server, the payment with this timeout.
async fn app_with_http_providers(mock: &MockServer, payment_timeout_ms: u64) -> TestApp {
    let uri = mock.uri();
    spawn_app_with(move |s: &mut Settings| {
        for (provider, path) in [
            (&mut s.checkout.payment, "/pay"),
            (&mut s.checkout.email, "/mail"),
        ] {
            provider.kind = ProviderKind::Http;
            provider.url = format!("{uri}{path}");
            provider.timeout_ms = GENEROUS_TIMEOUT_MS;
        }
        s.checkout.payment.timeout_ms = payment_timeout_ms;
        s.database.acquire_timeout_secs = 1;
    })
    .await
}

/// A provider server answering the payment and the email calls as given (the payment
/// expected `payment_calls` times), and an app that uses it with this payment timeout.
async fn with_providers(
    payment: impl wiremock::Respond + 'static,
    email: ResponseTemplate,
    payment_calls: Option<u64>,
    payment_timeout_ms: u64,
) -> (MockServer, TestApp) {
    let mock = MockServer::start().await;
    let charge = Mock::given(method("POST"))
        .and(path("/pay"))
        .respond_with(payment);
    match payment_calls {
        Some(calls) => charge.expect(calls).mount(&mock).await,
        None => charge.mount(&mock).await,
    }
    Mock::given(method("POST"))
        .and(path("/mail"))
        .respond_with(email)
        .mount(&mock)
        .await;
    let app = app_with_http_providers(&mock, payment_timeout_ms).await;
    (mock, app)
}

/// Providers whose payment endpoint may be called once, answering `payment`.
async fn charging_at_most_once(payment: ResponseTemplate) -> (MockServer, TestApp) {
    with_providers(
        payment,
        ResponseTemplate::new(200),
        Some(1),
        GENEROUS_TIMEOUT_MS,
    )
    .await
}

fn paid() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"status": "succeeded", "transaction_id": "tx_1"}))
}

async fn order_row(app: &TestApp) -> (String, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status, payment_status, email_status FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_paid_checkout_is_201_with_both_outcomes_recorded() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/pay"))
        .and(header_exists("idempotency-key"))
        .respond_with(paid())
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/mail"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let app = app_with_http_providers(&mock, GENEROUS_TIMEOUT_MS).await;

    let response = post(&app, &order(), None).await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "paid");
    assert_eq!(body["payment"]["status"], "succeeded");
    assert_eq!(body["payment"]["transaction_id"], "tx_1");
    assert_eq!(body["email"]["status"], "sent");
    assert!(body["order_id"].is_string() && body["elapsed_ms"].is_u64());
    assert_eq!(
        order_row(&app).await,
        ("paid".into(), Some("succeeded".into()), Some("sent".into()))
    );
    let charged: Value = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .find(|r| r.url.path() == "/pay")
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(charged["amount_cents"], 1299);
    assert_eq!(charged["currency"], "EUR");
}

#[tokio::test]
async fn a_declined_payment_is_402() {
    let (_mock, app) = with_providers(
        ResponseTemplate::new(200).set_body_json(json!({"status": "declined"})),
        ResponseTemplate::new(200),
        None,
        GENEROUS_TIMEOUT_MS,
    )
    .await;

    let body = assert_problem(post(&app, &order(), None).await, 402, "payment_declined").await;

    assert_eq!(body["order"]["payment"]["status"], "declined");
    assert_eq!(body["order"]["status"], "payment_failed");
    assert_eq!(order_row(&app).await.0, "payment_failed");
}

#[tokio::test]
async fn a_failing_payment_provider_is_502() {
    let (_mock, app) = with_providers(
        ResponseTemplate::new(500),
        ResponseTemplate::new(200),
        None,
        GENEROUS_TIMEOUT_MS,
    )
    .await;

    let body = assert_problem(
        post(&app, &order(), None).await,
        502,
        "provider_unavailable",
    )
    .await;

    assert_eq!(body["order"]["payment"]["status"], "failed");
}

#[tokio::test]
async fn a_payment_slower_than_its_timeout_is_504() {
    // The email's answer is immediate and its timeout generous: only the payment times out.
    let (_mock, app) = with_providers(
        paid().set_delay(std::time::Duration::from_secs(120)),
        ResponseTemplate::new(200),
        None,
        1_000,
    )
    .await;

    let body = assert_problem(
        post(&app, &order(), None).await,
        504,
        "provider_unavailable",
    )
    .await;

    assert_eq!(body["order"]["payment"]["status"], "timed_out");
    assert_eq!(body["order"]["email"]["status"], "sent");
    assert_eq!(order_row(&app).await.1.as_deref(), Some("timed_out"));
}

#[tokio::test]
async fn a_failing_email_never_fails_a_paid_order() {
    let (_mock, app) = with_providers(
        paid(),
        ResponseTemplate::new(503),
        None,
        GENEROUS_TIMEOUT_MS,
    )
    .await;

    let response = post(&app, &order(), None).await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"]["status"], "failed");
    assert_eq!(
        order_row(&app).await,
        (
            "paid".into(),
            Some("succeeded".into()),
            Some("failed".into())
        )
    );
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_answer_without_charging_again() {
    let (_mock, app) = charging_at_most_once(paid()).await;

    let first = post(&app, &order(), Some("key-1")).await;
    let second = post(&app, &order(), Some("key-1")).await;

    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let (a, b): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(a, b);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let (_mock, app) = charging_at_most_once(paid()).await;
    post(&app, &order(), Some("key-2")).await;

    let mut other = order();
    other["amount_cents"] = json!(5000);
    assert_problem(
        post(&app, &other, Some("key-2")).await,
        422,
        "idempotency_key_reused",
    )
    .await;
}

#[tokio::test]
async fn a_key_that_is_not_1_to_255_visible_ascii_characters_is_400_and_charges_nothing() {
    let (mock, app) = with_providers(paid(), ResponseTemplate::new(200), Some(0), 1000).await;
    for key in ["two words", &"k".repeat(256), "tab\there"] {
        assert_problem(
            post(&app, &order(), Some(key)).await,
            400,
            "invalid_request",
        )
        .await;
    }
    mock.verify().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_charge_exactly_once() {
    // Slow enough that the requests overlap; the assertion does not depend on it.
    let slow_payment = paid().set_delay(std::time::Duration::from_millis(100));
    let (_mock, app) = charging_at_most_once(slow_payment).await;

    let body = order();
    let responses =
        futures_util::future::join_all((0..5).map(|_| post(&app, &body, Some("key-3")))).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 1);
}

#[tokio::test]
async fn invalid_orders_are_422_naming_each_field() {
    let app = spawn_app_with(|_| {}).await;
    let cases = [
        ("customer_email", json!("not-an-email")),
        ("amount_cents", json!(0)),
        ("amount_cents", json!(-5)),
        ("currency", json!("XYZ")),
        ("items", json!([])),
    ];
    for (field, value) in cases {
        let mut body = order();
        body[field] = value.clone();
        let problem = assert_problem(post(&app, &body, None).await, 422, "invalid_request").await;
        assert_eq!(problem["errors"][0]["field"], field, "{field} = {value}");
    }
    let broken = app
        .client
        .post(app.url("/checkout"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(broken, 400, "invalid_request").await;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        orders, 0,
        "nothing is charged or recorded for an invalid order"
    );
}

#[tokio::test]
async fn the_simulated_providers_serve_a_checkout_out_of_the_box() {
    let app = spawn_app_with(|s| {
        s.checkout.payment.simulated_latency_ms = 20;
        s.checkout.email.simulated_latency_ms = 10;
    })
    .await;
    let response = post(&app, &order(), None).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["payment"]["transaction_id"]
            .as_str()
            .unwrap()
            .starts_with("sim_")
    );

    let declining = spawn_app_with(|s| {
        s.checkout.payment.simulated_latency_ms = 1;
        s.checkout.payment.simulated_outcome = SimulatedOutcome::Decline;
    })
    .await;
    assert_problem(
        post(&declining, &order(), None).await,
        402,
        "payment_declined",
    )
    .await;
}

#[tokio::test]
async fn a_nul_in_any_string_is_422_naming_the_field() {
    let app = spawn_app_with(|_| {}).await;
    let mut body = order();
    body["items"][0]["sku"] = json!("BOOK\u{0}1");
    let problem = assert_problem(post(&app, &body, None).await, 422, "invalid_request").await;
    assert_eq!(problem["errors"][0]["field"], "items[0].sku");
    let mut body = order();
    body["customer_email"] = json!("a\u{0}@example.com");
    let problem = assert_problem(post(&app, &body, None).await, 422, "invalid_request").await;
    assert_eq!(problem["errors"][0]["field"], "customer_email");
}

/// Answers the first charge only once the test has taken Postgres away, so that recording its
/// outcome fails after the provider charged; later charges at once.
struct ChargesBeforeAnOutage {
    called: std::sync::mpsc::SyncSender<()>,
    resume: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    first: std::sync::atomic::AtomicBool,
}

impl wiremock::Respond for ChargesBeforeAnOutage {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        // The mock server runs on a thread of its own: blocking it holds only this answer.
        if !self.first.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.called.send(()).unwrap();
            let resume = self.resume.lock().unwrap();
            resume
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap();
        }
        paid()
    }
}

#[tokio::test]
async fn a_retry_after_a_failure_past_the_charge_never_charges_twice() {
    let (called, charged) = std::sync::mpsc::sync_channel(1);
    let (resume, resumed) = std::sync::mpsc::sync_channel(1);
    let payment = ChargesBeforeAnOutage {
        called,
        resume: std::sync::Mutex::new(resumed),
        first: false.into(),
    };
    let (mock, app) = with_providers(
        payment,
        ResponseTemplate::new(200),
        None,
        GENEROUS_TIMEOUT_MS,
    )
    .await;

    let body = order();
    let (first, ()) = tokio::join!(post(&app, &body, Some("retry-me")), async {
        tokio::task::spawn_blocking(move || charged.recv().unwrap())
            .await
            .unwrap();
        app.set_connections_allowed(false).await;
        resume.send(()).unwrap();
    });
    assert_problem(first, 503, "database_unavailable").await;
    app.set_connections_allowed(true).await;

    let retry = post(&app, &body, Some("retry-me")).await;

    assert_eq!(retry.status(), 201);
    let answer: Value = retry.json().await.unwrap();
    // However often the provider was asked, it was always about one order: one charge.
    let charges: std::collections::BTreeSet<String> = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/pay")
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(
        Some(answer["order_id"].as_str().unwrap()),
        charges.first().map(String::as_str)
    );
    assert_eq!(order_row(&app).await.0, "paid");
    let replay = post(&app, &body, Some("retry-me")).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_caller() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.checkout.payment.simulated_latency_ms = 1;
        s.checkout.email.simulated_latency_ms = 1;
    })
    .await;
    let alice = app.user_with_token("alice").await;
    let bob = app.user_with_token("bob").await;
    let mut other = order();
    other["amount_cents"] = json!(5000);
    let as_caller = |token: Option<&str>, body: &Value| {
        let mut request = app
            .client
            .post(app.url("/checkout"))
            .header("Idempotency-Key", "same-key")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let statuses = [
        as_caller(Some(&alice), &order()).await.unwrap().status(),
        as_caller(Some(&bob), &other).await.unwrap().status(),
    ];

    assert_eq!(statuses.map(|s| s.as_u16()), [201, 201]);
    // Without a token every caller is `anonymous`: one caller's key would replay another's
    // order. Refused, and nothing is charged; without a key the order goes through.
    let tokenless = as_caller(None, &other).await.unwrap();
    let problem = assert_problem(tokenless, 400, "invalid_request").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("needs a bearer token")
    );
    let without_key = app
        .client
        .post(app.url("/checkout"))
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(without_key.status(), 201);
    let reused = as_caller(Some(&alice), &other).await.unwrap();
    assert_problem(reused, 422, "idempotency_key_reused").await;
    let invalid = as_caller(Some("intake_nope"), &order()).await.unwrap();
    assert_problem(invalid, 401, "unauthorized").await;
}

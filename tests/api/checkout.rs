use intake::configuration::{ProviderKind, Settings, SimulatedOutcome};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header_exists, method, path},
};

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

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

/// Both providers talk HTTP to one mock server, each with a short timeout.
async fn app_with_http_providers(mock: &MockServer) -> TestApp {
    let uri = mock.uri();
    spawn_app_with(move |s: &mut Settings| {
        for (provider, path) in [
            (&mut s.checkout.payment, "/pay"),
            (&mut s.checkout.email, "/mail"),
        ] {
            provider.kind = ProviderKind::Http;
            provider.url = format!("{uri}{path}");
            provider.timeout_ms = 300;
        }
    })
    .await
}

/// A provider server answering the payment and the email calls as given (the payment
/// expected `payment_calls` times), and an app that uses it.
async fn with_providers(
    payment: ResponseTemplate,
    email: ResponseTemplate,
    payment_calls: Option<u64>,
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
    let app = app_with_http_providers(&mock).await;
    (mock, app)
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
    let app = app_with_http_providers(&mock).await;

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
    )
    .await;

    let body = assert_problem(post(&app, &order(), None).await, 402, "payment_declined").await;

    assert_eq!(body["order"]["payment"]["status"], "declined");
    assert_eq!(body["order"]["status"], "payment_failed");
    assert_eq!(order_row(&app).await.0, "payment_failed");
}

#[tokio::test]
async fn a_failing_payment_provider_is_502() {
    let (_mock, app) =
        with_providers(ResponseTemplate::new(500), ResponseTemplate::new(200), None).await;

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
    let (_mock, app) = with_providers(
        paid().set_delay(std::time::Duration::from_secs(5)),
        ResponseTemplate::new(200),
        None,
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
    let (_mock, app) = with_providers(paid(), ResponseTemplate::new(503), None).await;

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
    let (_mock, app) = with_providers(paid(), ResponseTemplate::new(200), Some(1)).await;

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
    let (_mock, app) = with_providers(paid(), ResponseTemplate::new(200), Some(1)).await;
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
async fn concurrent_requests_with_one_key_charge_exactly_once() {
    // Slow enough that the requests overlap; the assertion does not depend on it.
    let slow_payment = paid().set_delay(std::time::Duration::from_millis(100));
    let (_mock, app) = with_providers(slow_payment, ResponseTemplate::new(200), Some(1)).await;

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

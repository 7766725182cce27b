use std::collections::HashMap;

use intake::base::configuration::Settings;
use serde_json::Value;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::helpers::{GENEROUS_TIMEOUT_MS, TestApp, assert_problem, spawn_app, spawn_app_with};

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn ping_pongs() {
    let app = spawn_app().await;
    assert_eq!(
        json(&app, "/ping").await,
        serde_json::json!({"message": "pong"})
    );
}

#[tokio::test]
async fn slow_waits_the_asked_time_within_its_bound() {
    let app = spawn_app_with(|s| s.lessons.slow_max_ms = 100).await;
    let body = json(&app, "/slow?ms=5").await;
    assert_eq!(body["status"], "done");
    // What was asked, echoed: that the wait really happens (and holds no thread) is proven on
    // the paused clock by `api::lessons::tests::a_thousand_slow_waits_overlap`.
    assert_eq!(body["waited_ms"], 5);
    let problem = assert_problem(app.get("/slow?ms=101").await, 422, "invalid_request").await;
    assert_eq!(problem["errors"][0]["field"], "ms");
    assert_problem(app.get("/slow?ms=-1").await, 400, "invalid_request").await;
}

#[tokio::test]
async fn blocking_work_runs_on_the_blocking_pool() {
    let app = spawn_app_with(|s| s.lessons.blocking_max_ms = 50).await;
    let body = json(&app, "/blocking?ms=5").await;
    assert_eq!(body["waited_ms"], 5);
    assert!(body["event_loop_thread"].is_string());
    assert_ne!(
        body["blocking_thread"], body["event_loop_thread"],
        "moved off the event loop"
    );
    assert_problem(app.get("/blocking?ms=51").await, 422, "invalid_request").await;
}

#[tokio::test]
async fn users_are_read_from_postgres() {
    let app = spawn_app().await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, email) VALUES ('ada', 'ada@example.com') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let user = json(&app, &format!("/users/{id}")).await;
    assert_eq!(user["name"], "ada");
    assert_eq!(user["email"], "ada@example.com");
    assert_problem(
        app.get(&format!("/users/{}", id + 1)).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(app.get("/users/abc").await, 404, "not_found").await;
}

/// An app whose `/external` calls the mock with this timeout.
async fn app_calling(mock: &MockServer, timeout_ms: u64) -> TestApp {
    let url = format!("{}/upstream", mock.uri());
    spawn_app_with(move |s| {
        s.lessons.external_url = url;
        s.lessons.external_timeout_ms = timeout_ms;
    })
    .await
}

#[tokio::test]
async fn external_returns_the_upstream_answer() {
    let mock = MockServer::start().await;
    Mock::given(path("/upstream"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"hello": "world"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let app = app_calling(&mock, GENEROUS_TIMEOUT_MS).await;
    let body = json(&app, "/external").await;
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"]["hello"], "world");
}

#[tokio::test]
async fn external_failures_are_502_and_timeouts_504() {
    let failing = MockServer::start().await;
    Mock::given(path("/upstream"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    let app = app_calling(&failing, GENEROUS_TIMEOUT_MS).await;
    assert_problem(app.get("/external").await, 502, "provider_unavailable").await;

    let slow = MockServer::start().await;
    Mock::given(path("/upstream"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(120)))
        .mount(&slow)
        .await;
    let app = app_calling(&slow, 1_000).await;
    assert_problem(app.get("/external").await, 504, "provider_unavailable").await;
}

/// The lessons are teaching endpoints: where they are off (the production configuration) they
/// are as absent as any unknown path, in the document too, and `/ping` still answers.
#[tokio::test]
async fn the_lessons_are_absent_where_they_are_off_and_off_in_production() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let production = Settings::load_from(&config, "production", HashMap::new()).unwrap();
    assert!(!production.lessons.enabled);
    let local = Settings::load_from(&config, "local", HashMap::new()).unwrap();
    assert!(local.lessons.enabled);

    let app = spawn_app_with(|s| s.lessons.enabled = false).await;
    for path in ["/slow?ms=1", "/blocking?ms=1", "/external", "/users/1"] {
        assert_problem(app.get(path).await, 404, "not_found").await;
    }
    assert_eq!(json(&app, "/ping").await["message"], "pong");
    let document = json(&app, "/openapi.json").await;
    assert!(document["paths"].get("/ping").is_some());
    for path in ["/slow", "/blocking", "/external", "/users/{id}"] {
        assert!(
            document["paths"].get(path).is_none(),
            "{path} is documented"
        );
    }
}

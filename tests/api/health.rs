use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn liveness_and_readiness_answer_ok() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let ok = app.get("/health/live").await;
    let missing = app.get("/no/such/route").await;
    let a = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let b = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    assert_ne!(a, b, "each request has its own id");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    let app = spawn_app().await;
    assert_problem(app.get("/no/such/route").await, 404, "not_found").await;
    let response = app.client.put(app.url("/upload")).send().await.unwrap();
    assert_problem(response, 405, "invalid_request").await;
    // `/files` has two resources (POST in uploads, GET in files): other methods are still 405.
    let response = app.client.put(app.url("/files")).send().await.unwrap();
    assert_problem(response, 405, "invalid_request").await;
    assert_problem(app.get("/checkout").await, 405, "invalid_request").await;
    let response = app.client.post(app.url("/ping")).send().await.unwrap();
    assert_problem(response, 405, "invalid_request").await;
}

#[tokio::test]
async fn concurrent_readiness_probes_all_pass() {
    let app = spawn_app().await;
    let probes = (0..16).map(|_| app.get("/health/ready"));
    for response in futures_util::future::join_all(probes).await {
        assert_eq!(response.status(), 200);
    }
    assert!(app.leftovers().await.is_empty(), "no probe is left");
}

//! What auth off answers to: requests addressed to this machine, never a web page's own name
//! (DNS rebinding), unless the host is listed.

use crate::helpers::{TestApp, assert_problem, file_part, spawn_app, spawn_app_with};

async fn get_as_host(app: &TestApp, path: &str, host: &str) -> reqwest::Response {
    let request = app.client.get(app.url(path)).header("Host", host);
    request.send().await.unwrap()
}

#[tokio::test]
async fn with_auth_off_a_request_to_another_host_is_403_and_changes_nothing() {
    let app = spawn_app().await;
    let port = app.url("").rsplit(':').next().unwrap().to_owned();
    let rebound = format!("rebound.example:{port}");

    for path in ["/files", "/", "/me", "/openapi.json"] {
        let refused = get_as_host(&app, path, &rebound).await;
        let problem = assert_problem(refused, 403, "host_not_allowed").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("rebound.example")
        );
    }
    let form =
        reqwest::multipart::Form::new().part("file", file_part("a.txt", b"a".to_vec(), None));
    let upload = app
        .client
        .post(app.url("/upload"))
        .header("Host", &rebound)
        .multipart(form);
    assert_problem(upload.send().await.unwrap(), 403, "host_not_allowed").await;
    assert!(app.row_ids().await.is_empty());

    // This machine's names, and probes of any host.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            get_as_host(&app, "/files", &host).await.status(),
            200,
            "{host}"
        );
    }
    assert_eq!(
        get_as_host(&app, "/health/live", &rebound).await.status(),
        200
    );
}

#[tokio::test]
async fn with_auth_off_a_listed_host_is_served() {
    let app = spawn_app_with(|s| s.server.allowed_hosts = vec!["files.internal".into()]).await;

    assert_eq!(
        get_as_host(&app, "/files", "files.internal").await.status(),
        200
    );
    let other = get_as_host(&app, "/files", "other.internal").await;
    assert_problem(other, 403, "host_not_allowed").await;
}

#[tokio::test]
async fn with_auth_on_any_host_is_served() {
    let app = spawn_app_with(|s| s.auth.enabled = true).await;

    assert_eq!(
        get_as_host(&app, "/openapi.json", "files.example.com")
            .await
            .status(),
        200
    );
    let files = get_as_host(&app, "/files", "files.example.com").await;
    assert_problem(files, 401, "unauthorized").await;
}

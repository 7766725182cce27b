//! What answers say about themselves: a user's data is never cached, and the API document's
//! pages are only those served under our policies.

use crate::helpers::{assert_problem, file_part, spawn_app};

/// A shared cache must never keep one user's list, file or account for another.
#[tokio::test]
async fn answers_about_a_users_files_and_account_are_never_stored_by_a_cache() {
    let app = spawn_app().await;
    let form =
        reqwest::multipart::Form::new().part("file", file_part("a.txt", b"a".to_vec(), None));
    let file: serde_json::Value = app.upload(form).await.json().await.unwrap();
    let id = file["id"].as_str().unwrap();

    for path in [
        "/files".to_owned(),
        format!("/files/{id}"),
        "/me".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "private, no-store",
            "{path}"
        );
    }
}

/// Swagger UI's OAuth2 redirect page carries an inline script our policy forbids, and the API
/// has no OAuth2: it is not served, while the document's page is, under its policy.
#[tokio::test]
async fn the_docs_serve_no_oauth2_redirect_page() {
    let app = spawn_app().await;

    assert_problem(
        app.get("/docs/oauth2-redirect.html").await,
        404,
        "not_found",
    )
    .await;

    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(!policy.contains("script-src 'unsafe-inline'"), "{policy}");
}

//! Cross-origin requests (`http.cors`) as a browser makes them: the preflight of every route a
//! browser client uses, the headers a page may read, errors that carry the CORS headers too,
//! refusals in problem+json, and the settings refused at start-up. (Uppy and tus-js-client in
//! a real browser on another origin: `browser`.)

use intake::{base::telemetry::cause_chain, startup::Application};
use reqwest::{Method, Response, multipart};
use uuid::Uuid;

use crate::{
    helpers::{TestApp, assert_problem, random_bytes, spawn_app, spawn_app_with, test_settings},
    tus::Tus,
};

const APP_ORIGIN: &str = "https://app.example.com";

async fn with_origins(origins: &[&str]) -> TestApp {
    let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.http.cors.allowed_origins = origins;
    })
    .await
}

async fn preflight(
    app: &TestApp,
    origin: &str,
    method: &str,
    path: &str,
    headers: &str,
) -> Response {
    let mut request =
        from(app, origin, Method::OPTIONS, path).header("access-control-request-method", method);
    if !headers.is_empty() {
        request = request.header("access-control-request-headers", headers);
    }
    request.send().await.unwrap()
}

/// A request of a page on `origin`.
fn from(app: &TestApp, origin: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("origin", origin)
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The comma-separated list a header holds, lowercased.
fn listed(response: &Response, name: &str) -> Vec<String> {
    header(response, name)
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

#[tokio::test]
async fn every_route_a_browser_client_uses_answers_its_preflight() {
    let app = with_origins(&[APP_ORIGIN, "http://localhost:5173"]).await;
    let id = Uuid::now_v7();
    let routes = [
        (
            "POST",
            "/upload".to_owned(),
            "authorization, content-type, idempotency-key",
        ),
        ("POST", "/files".to_owned(), "authorization, content-type"),
        ("GET", "/files".to_owned(), "authorization"),
        ("GET", format!("/files/{id}"), "authorization"),
        ("DELETE", format!("/files/{id}"), "authorization"),
        (
            "GET",
            format!("/files/{id}/content"),
            "authorization, range, if-none-match",
        ),
        ("GET", "/me".to_owned(), "authorization"),
        (
            "POST",
            "/tus/".to_owned(),
            "authorization, tus-resumable, upload-length, upload-metadata, upload-defer-length, upload-concat, content-type",
        ),
        (
            "PATCH",
            format!("/tus/{id}"),
            "authorization, tus-resumable, upload-offset, upload-checksum, content-type",
        ),
        (
            "POST",
            format!("/tus/{id}"),
            "authorization, tus-resumable, x-http-method-override",
        ),
        ("HEAD", format!("/tus/{id}"), "authorization, tus-resumable"),
        (
            "DELETE",
            format!("/tus/{id}"),
            "authorization, tus-resumable",
        ),
    ];
    for (method, path, headers) in routes {
        let answer = preflight(&app, APP_ORIGIN, method, &path, headers).await;

        let what = format!("{method} {path}");
        assert_eq!(answer.status(), 200, "{what}");
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            Some(APP_ORIGIN),
            "{what}"
        );
        assert!(
            listed(&answer, "access-control-allow-methods").contains(&method.to_ascii_lowercase()),
            "{what}"
        );
        let allowed = listed(&answer, "access-control-allow-headers");
        for asked in headers.split(", ") {
            assert!(
                allowed.contains(&asked.to_owned()),
                "{what}: {asked} in {allowed:?}"
            );
        }
        assert_eq!(
            header(&answer, "access-control-max-age"),
            Some("7200"),
            "{what}"
        );
        assert!(
            listed(&answer, "vary").contains(&"origin".to_owned()),
            "{what}"
        );
        // Never credentials: the token is a header the page sends itself.
        assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    }
    // The second origin is answered as itself.
    let other = preflight(
        &app,
        "http://localhost:5173",
        "POST",
        "/upload",
        "authorization",
    )
    .await;
    assert_eq!(
        header(&other, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
}

#[tokio::test]
async fn answers_and_errors_name_the_origin_and_what_a_page_may_read() {
    let app = with_origins(&[APP_ORIGIN]).await;
    let token = app.user_with_token("ada").await;

    let stored = from(&app, APP_ORIGIN, Method::POST, "/upload")
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part(
            "file",
            multipart::Part::bytes(b"hi".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
    assert_eq!(
        header(&stored, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    let exposed = listed(&stored, "access-control-expose-headers");
    for name in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "content-location",
        "retry-after",
        "x-request-id",
        "etag",
        "content-disposition",
    ] {
        assert!(exposed.contains(&name.to_owned()), "{name} in {exposed:?}");
    }
    assert!(header(&stored, "x-request-id").is_some());

    // Refusals a page must be able to read: no token, a quota, an unknown file.
    let no_token = from(&app, APP_ORIGIN, Method::GET, "/files")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&no_token, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert_problem(no_token, 401, "unauthorized").await;
    let unknown = from(
        &app,
        APP_ORIGIN,
        Method::GET,
        &format!("/files/{}", Uuid::now_v7()),
    )
    .bearer_auth(&token)
    .send()
    .await
    .unwrap();
    assert_eq!(
        header(&unknown, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert_problem(unknown, 404, "not_found").await;
}

#[tokio::test]
async fn a_refusal_mid_upload_carries_the_cors_headers() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 100_000;
        s.http.cors.allowed_origins = vec![APP_ORIGIN.to_owned()];
    })
    .await;
    let token = app.user_with_token("ada").await;
    let part = multipart::Part::bytes(random_bytes(300_000, 1)).file_name("big.bin");

    let over = from(&app, APP_ORIGIN, Method::POST, "/upload")
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();

    assert_eq!(
        header(&over, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(listed(&over, "access-control-expose-headers").contains(&"x-request-id".to_owned()));
    assert_problem(over, 413, "quota_exceeded").await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn tus_answers_carry_the_cors_headers_a_tus_client_reads() {
    let app = with_origins(&[APP_ORIGIN]).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);

    // The tus discovery `OPTIONS` is no preflight (no Access-Control-Request-Method): the tus
    // route answers it, with the CORS headers.
    let options = from(&app, APP_ORIGIN, Method::OPTIONS, "/tus/")
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 204);
    assert!(header(&options, "tus-extension").is_some());
    assert_eq!(
        header(&options, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );

    let created = tus
        .request(Method::POST, "/tus/")
        .header("origin", APP_ORIGIN)
        .header("upload-length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        header(&created, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert!(listed(&created, "access-control-expose-headers").contains(&"location".to_owned()));
    let path = header(&created, "location").unwrap().to_owned();
    assert_eq!(tus.delete(&path).await.status(), 204);
}

#[tokio::test]
async fn a_preflight_the_settings_do_not_allow_is_403_cors_refused() {
    let app = with_origins(&[APP_ORIGIN]).await;

    let stranger = preflight(
        &app,
        "https://evil.example",
        "POST",
        "/upload",
        "authorization",
    )
    .await;
    assert_eq!(header(&stranger, "access-control-allow-origin"), None);
    let body = assert_problem(stranger, 403, "cors_refused").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("http.cors.allowed_origins"),
        "{body}"
    );

    let odd_header = preflight(
        &app,
        APP_ORIGIN,
        "POST",
        "/upload",
        "x-not-a-header-we-take",
    )
    .await;
    assert_problem(odd_header, 403, "cors_refused").await;
    let odd_method = preflight(&app, APP_ORIGIN, "PUT", "/upload", "").await;
    assert_problem(odd_method, 403, "cors_refused").await;
    let malformed = preflight(&app, APP_ORIGIN, "POST", "/upload", "not a header, ").await;
    assert_problem(malformed, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_request_from_an_origin_not_listed_is_served_without_cors_headers() {
    // The browser keeps the answer from the page; the server refuses nothing (its own page at
    // `/` sends an `Origin` with its uploads).
    let app = with_origins(&[APP_ORIGIN]).await;
    let token = app.user_with_token("ada").await;

    let answer = from(&app, "https://evil.example", Method::GET, "/me")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_allowed_origins_no_cors_header_is_sent() {
    let app = spawn_app().await;

    let asked = preflight(&app, APP_ORIGIN, "POST", "/upload", "content-type").await;
    let plain = from(&app, APP_ORIGIN, Method::GET, "/files")
        .send()
        .await
        .unwrap();

    assert_eq!(header(&asked, "access-control-allow-origin"), None);
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
    assert_eq!(plain.status(), 200);
}

#[tokio::test]
async fn any_origin_is_answered_with_a_wildcard_when_auth_is_on() {
    let app = with_origins(&["*"]).await;

    let asked = preflight(
        &app,
        "https://anyone.example",
        "POST",
        "/upload",
        "authorization",
    )
    .await;

    assert_eq!(asked.status(), 200);
    assert_eq!(header(&asked, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn settings_that_would_open_the_api_or_never_match_are_refused_at_start_up() {
    for (origins, auth, says) in [
        (vec!["*"], false, "needs auth.enabled = true"),
        (vec!["https://app.example.com/"], true, "no trailing slash"),
        (vec!["*", APP_ORIGIN], true, "cannot be listed with others"),
    ] {
        let mut settings = test_settings();
        settings.server.port = 0;
        settings.auth.enabled = auth;
        settings.http.cors.allowed_origins = origins.iter().map(|o| (*o).to_owned()).collect();

        let failure = match Application::build(settings).await {
            Ok(_) => panic!("started with {origins:?}"),
            Err(error) => cause_chain(&error),
        };

        assert!(failure.contains(says), "{origins:?}: {failure}");
    }
}

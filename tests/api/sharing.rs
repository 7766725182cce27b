//! Share links: a file downloaded without a token through its link, as its owner downloads it
//! (ranges, validators, `HEAD`), until the link expires (`410`), is used up (`410`), is revoked
//! or its file deleted (`404`); made, listed and revoked by the file's owner only.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    NOT_INLINE, TestApp, assert_invalid_field, assert_problem, assert_refuses_what_is_not_json,
    file_part, random_bytes, sha256_hex, spawn_app_with,
};

async fn app() -> TestApp {
    spawn_app_with(|s| s.auth.enabled = true).await
}

/// Uploads `bytes` as `token`'s; the file's id.
async fn stored(app: &TestApp, token: &str, bytes: &[u8]) -> String {
    let part = file_part("shared.bin", bytes.to_vec(), None);
    let response = app.upload_as(token, part).await;
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

async fn make_link(app: &TestApp, token: &str, file: &str, body: Value) -> Response {
    app.client
        .post(app.url(&format!("/files/{file}/links")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A link to `file`, made by `token`; its object.
async fn link(app: &TestApp, token: &str, file: &str, body: Value) -> Value {
    let made = make_link(app, token, file, body).await;
    assert_eq!(made.status(), 201, "{:?}", made.text().await);
    made.json().await.unwrap()
}

/// `GET` of a link's URL, without a token.
async fn fetch(app: &TestApp, url: &str, range: Option<&str>) -> Response {
    let mut request = app.client.get(app.url(url));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    request.send().await.unwrap()
}

/// `DELETE path` as `token`.
async fn delete(app: &TestApp, token: &str, path: &str) -> Response {
    let request = app.client.delete(app.url(path)).bearer_auth(token);
    request.send().await.unwrap()
}

async fn links_of(app: &TestApp, token: &str, file: &str) -> Vec<Value> {
    let listed = app.get_as(token, &format!("/files/{file}/links")).await;
    assert_eq!(listed.status(), 200);
    listed.json().await.unwrap()
}

#[tokio::test]
async fn a_link_downloads_the_file_without_a_token_as_its_owner_would() {
    let app = app().await;
    let token = app.user_with_token("ada").await;
    let bytes = random_bytes(NOT_INLINE + 5_000, 41);
    let file = stored(&app, &token, &bytes).await;

    let made = make_link(&app, &token, &file, json!({})).await;
    assert_eq!(made.status(), 201);
    let location = made.headers()["location"].to_str().unwrap().to_owned();
    let shared: Value = made.json().await.unwrap();
    assert_eq!(
        location,
        format!("/files/{file}/links/{}", shared["id"].as_str().unwrap())
    );
    assert_eq!(shared["downloads"], 0);
    assert_eq!(shared["max_downloads"], Value::Null);
    let url = shared["url"].as_str().unwrap();
    assert!(
        url.starts_with("/shared/") && url.len() == "/shared/".len() + 43,
        "{url}"
    );

    let whole = fetch(&app, url, None).await;
    assert_eq!(whole.status(), 200);
    let headers = whole.headers().clone();
    assert_eq!(headers["cache-control"], "private");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        sha256_hex(&whole.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );

    // A range that stops short, HEAD and 304 do not count; the range that ends a resumed
    // download does.
    let head = fetch(&app, url, Some("bytes=0-9")).await;
    assert_eq!(head.status(), 206);
    assert_eq!(head.bytes().await.unwrap(), bytes[..10]);
    let heads = app.client.head(app.url(url)).send().await.unwrap();
    assert_eq!(heads.status(), 200);
    let unchanged = app
        .client
        .get(app.url(url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let tail = fetch(&app, url, Some("bytes=10-")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), bytes[10..]);

    let listed = links_of(&app, &token, &file).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["downloads"], 2);
    assert_eq!(listed[0]["url"], Value::Null, "the secret is shown once");
}

#[tokio::test]
async fn a_used_up_or_expired_link_is_gone_and_a_revoked_one_unknown() {
    let app = app().await;
    let token = app.user_with_token("ada").await;
    let bytes = b"small enough to be inline".to_vec();
    let file = stored(&app, &token, &bytes).await;

    let once = link(&app, &token, &file, json!({"max_downloads": 1})).await;
    let once = once["url"].as_str().unwrap();
    assert_eq!(fetch(&app, once, None).await.bytes().await.unwrap(), bytes);
    let used = fetch(&app, once, None).await;
    assert_problem(used, 410, "link_used_up").await;

    let expiring = link(&app, &token, &file, json!({"expires_in": "1h"})).await;
    let expires_at = time::OffsetDateTime::parse(
        expiring["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lives = expires_at - time::OffsetDateTime::now_utc();
    assert!((59..=60).contains(&lives.whole_minutes()), "{lives}");
    // An hour later, as far as the link knows.
    sqlx::query("UPDATE share_links SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(
            expiring["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        )
        .execute(&app.pool)
        .await
        .unwrap();
    let expired = fetch(&app, expiring["url"].as_str().unwrap(), None).await;
    assert_problem(expired, 410, "link_expired").await;

    let revoked = link(&app, &token, &file, json!({"expires_in": null})).await;
    let path = format!("/files/{file}/links/{}", revoked["id"].as_str().unwrap());
    let deleted = delete(&app, &token, &path).await;
    assert_eq!(deleted.status(), 204);
    let gone = fetch(&app, revoked["url"].as_str().unwrap(), None).await;
    assert_problem(gone, 404, "not_found").await;
    let again = delete(&app, &token, &path).await;
    assert_problem(again, 404, "not_found").await;
    for unknown in [
        "/shared/nothing",
        "/shared/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_problem(fetch(&app, unknown, None).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn deleting_the_file_ends_its_links_on_every_instance() {
    let app = app().await;
    let other = app.another_instance(|s| s.auth.enabled = true).await;
    let token = app.user_with_token("ada").await;
    let bytes = random_bytes(NOT_INLINE * 2, 42);
    let file = stored(&app, &token, &bytes).await;
    let shared = link(&app, &token, &file, json!({"expires_in": "2d"})).await;
    let url = shared["url"].as_str().unwrap();

    let elsewhere = fetch(&other, url, None).await;
    assert_eq!(elsewhere.status(), 200);
    assert_eq!(
        sha256_hex(&elsewhere.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );

    let deleted = delete(&app, &token, &format!("/files/{file}")).await;
    assert_eq!(deleted.status(), 204);
    assert_problem(fetch(&other, url, None).await, 404, "not_found").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM share_links")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn only_the_owner_makes_lists_and_revokes_links_and_bad_requests_are_refused() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.sharing.max_expiry_secs = 7 * 86_400;
    })
    .await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    let file = stored(&app, &ada, b"ada's").await;
    let shared = link(&app, &ada, &file, json!({})).await;

    assert_problem(
        make_link(&app, &bob, &file, json!({})).await,
        404,
        "not_found",
    )
    .await;
    let listed = app.get_as(&bob, &format!("/files/{file}/links")).await;
    assert_problem(listed, 404, "not_found").await;
    let path = format!("/files/{file}/links/{}", shared["id"].as_str().unwrap());
    let revoked = delete(&app, &bob, &path).await;
    assert_problem(revoked, 404, "not_found").await;
    let tokenless = app
        .client
        .post(app.url(&format!("/files/{file}/links")))
        .send()
        .await;
    assert_problem(tokenless.unwrap(), 401, "unauthorized").await;

    for (body, field) in [
        (json!({"expires_in": "8d"}), "expires_in"),
        (json!({"expires_in": "soon"}), "expires_in"),
        (json!({"expires_in": "0s"}), "expires_in"),
        (json!({"max_downloads": 0}), "max_downloads"),
        (json!({"max_downloads": "3"}), "max_downloads"),
        (json!({"forever": true}), "forever"),
        (json!([null, null]), "object"),
    ] {
        let refused = make_link(&app, &ada, &file, body.clone()).await;
        assert_invalid_field(refused, field, &body).await;
    }
    let url = app.url(&format!("/files/{file}/links"));
    assert_refuses_what_is_not_json(app.client.post(url).bearer_auth(&ada)).await;
    // `null` takes the defaults, as no body does.
    link(&app, &ada, &file, Value::Null).await;
    // Nothing was made by the refusals; the links still work.
    assert_eq!(links_of(&app, &ada, &file).await.len(), 2);
    let url = shared["url"].as_str().unwrap();
    assert_eq!(
        fetch(&app, url, None).await.bytes().await.unwrap(),
        &b"ada's"[..]
    );
}

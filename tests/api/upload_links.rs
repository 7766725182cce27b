//! Upload links: a user with a token makes one; anyone holding its URL uploads files to them
//! without a token, multipart at the URL or tus with the secret in `Upload-Link`, within the
//! link's limits and the creator's quota, until it expires (`410`), has taken its files
//! (`410`) or is revoked (`404`). What a refusal leaves behind: nothing.

use reqwest::{Response, multipart};
use serde_json::{Value, json};

use crate::{
    helpers::{
        NOT_INLINE, TestApp, assert_invalid_field, assert_problem, assert_refuses_what_is_not_json,
        file_part, random_bytes, sha256_hex, spawn_app_with,
    },
    tus::{Tus, assert_nothing_resumable_left, header},
};

pub async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 10_000_000;
        s.sharing.max_expiry_secs = 30 * 86_400;
    })
    .await
}

/// `POST /upload-links` with `body` as `token`.
async fn make(app: &TestApp, token: &str, body: &Value) -> Response {
    let request = app.client.post(app.url("/upload-links")).bearer_auth(token);
    request.json(body).send().await.unwrap()
}

/// An upload link made by `token`; its object (with `url`).
pub async fn upload_link(app: &TestApp, token: &str, body: Value) -> Value {
    let made = make(app, token, &body).await;
    assert_eq!(made.status(), 201, "{:?}", made.text().await);
    made.json().await.unwrap()
}

/// The secret of a link's URL (`/send/{secret}`).
pub fn secret_of(link: &Value) -> String {
    let url = link["url"].as_str().unwrap();
    url.strip_prefix("/send/").unwrap().to_owned()
}

/// A multipart `POST` of `parts` to a link's URL, without a token.
async fn send(app: &TestApp, url: &str, parts: Vec<multipart::Part>) -> Response {
    let form = parts
        .into_iter()
        .fold(multipart::Form::new(), |form, part| {
            form.part("files", part)
        });
    let request = app.client.post(app.url(url)).multipart(form);
    request.send().await.unwrap()
}

/// What `GET <url>` says the link takes (`Accept: application/json`).
async fn allows(app: &TestApp, url: &str) -> Response {
    let request = app.client.get(app.url(url));
    request
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn files_of(app: &TestApp, token: &str) -> Vec<Value> {
    let listed: Value = app.get_as(token, "/files").await.json().await.unwrap();
    listed["files"].as_array().unwrap().clone()
}

async fn used_bytes(app: &TestApp, token: &str) -> u64 {
    let me: Value = app.get_as(token, "/me").await.json().await.unwrap();
    me["used_bytes"].as_u64().unwrap()
}

#[tokio::test]
async fn files_sent_through_a_link_without_a_token_are_its_creators() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let link = upload_link(&app, &ada, json!({"expires_in": "7d", "max_files": 3})).await;
    let url = link["url"].as_str().unwrap();
    assert_eq!(link["files"], 0);
    assert_eq!(link["max_files"], 3);
    let (big, small) = (random_bytes(NOT_INLINE * 3, 61), b"a note".to_vec());

    let sent = send(
        &app,
        url,
        vec![
            file_part("scan.bin", big.clone(), None),
            file_part("note.txt", small.clone(), Some("text/plain")),
        ],
    )
    .await;

    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.unwrap();
    let sent = sent["files"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    let mine = files_of(&app, &ada).await;
    for (file, bytes) in sent.iter().zip([&big, &small]) {
        assert_eq!(file["upload_link"], link["id"]);
        assert_eq!(file["sha256"], sha256_hex(bytes));
        assert!(mine.iter().any(|m| m["id"] == file["id"]), "{mine:?}");
        let content = format!("/files/{}/content", file["id"].as_str().unwrap());
        let got = app.get_as(&ada, &content).await.bytes().await.unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(bytes));
    }
    assert_eq!(
        used_bytes(&app, &ada).await,
        (big.len() + small.len()) as u64
    );
    let listed: Value = app
        .get_as(&ada, "/upload-links")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["files"], 2);
    assert_eq!(listed[0]["id"], link["id"]);
    assert!(listed[0].get("url").is_none(), "the secret is shown once");
    let said: Value = allows(&app, url).await.json().await.unwrap();
    assert_eq!(said["files_left"], 1);
    // Without `Accept: application/json`, a browser gets the page.
    let page = app.client.get(app.url(url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
}

#[tokio::test]
async fn a_links_limits_are_refused_in_words_and_nothing_is_kept() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let limits = json!({
        "max_files": 2,
        "max_file_bytes": 1000,
        "allowed_content_types": ["text/plain", "image/*"],
    });
    let link = upload_link(&app, &ada, limits).await;
    let url = link["url"].as_str().unwrap();
    let text = |name: &str| file_part(name, b"words".to_vec(), Some("text/plain"));

    let large = file_part("large.txt", vec![b'a'; 1001], Some("text/plain"));
    assert_problem(send(&app, url, vec![large]).await, 413, "file_too_large").await;
    let pdf = file_part("a.pdf", b"%PDF-1.7\n".to_vec(), Some("application/pdf"));
    let refused = send(&app, url, vec![pdf]).await;
    assert_problem(refused, 415, "unsupported_media_type").await;
    let three = vec![text("1.txt"), text("2.txt"), text("3.txt")];
    assert_problem(send(&app, url, three).await, 410, "link_used_up").await;
    assert!(files_of(&app, &ada).await.is_empty());
    assert_eq!(used_bytes(&app, &ada).await, 0);

    // Within them: stored, and counted until the link is full.
    assert_eq!(send(&app, url, vec![text("1.txt")]).await.status(), 201);
    let png = file_part("p.png", b"\x89PNG\r\n\x1a\n".to_vec(), None);
    assert_eq!(send(&app, url, vec![png]).await.status(), 201);
    let full = send(&app, url, vec![text("3.txt")]).await;
    let problem = assert_problem(full, 410, "link_used_up").await;
    assert!(
        problem["detail"].as_str().unwrap().contains('2'),
        "{problem}"
    );
    assert_eq!(files_of(&app, &ada).await.len(), 2);
    app.assert_consistent().await;
}

#[tokio::test]
async fn an_expired_link_is_gone_a_revoked_or_unknown_one_is_not_found() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let expiring = upload_link(&app, &ada, json!({"expires_in": "1h"})).await;
    let revoked = upload_link(&app, &ada, json!({})).await;
    sqlx::query("UPDATE upload_links SET expires_at = now() - interval '1 second' WHERE id = $1")
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
    let gone = format!("/upload-links/{}", revoked["id"].as_str().unwrap());
    let deleted = app.client.delete(app.url(&gone)).bearer_auth(&ada);
    assert_eq!(deleted.send().await.unwrap().status(), 204);
    let part = || vec![file_part("late.txt", b"late".to_vec(), None)];

    for (url, status, code) in [
        (expiring["url"].as_str().unwrap(), 410, "link_expired"),
        (revoked["url"].as_str().unwrap(), 404, "not_found"),
        (
            "/send/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            404,
            "not_found",
        ),
        ("/send/short", 404, "not_found"),
    ] {
        assert_problem(send(&app, url, part()).await, status, code).await;
        assert_problem(allows(&app, url).await, status, code).await;
        let tus = Tus::of(&app).with_link(url.trim_start_matches("/send/"));
        assert_problem(tus.create(4, "late.txt").await, status, code).await;
    }
    assert!(files_of(&app, &ada).await.is_empty());
    let listed: Value = app
        .get_as(&ada, "/upload-links")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the revoked link is gone"
    );
}

#[tokio::test]
async fn upload_links_are_made_listed_and_revoked_by_their_creator_only() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    for (body, field) in [
        (json!({"expires_in": "31d"}), "expires_in"),
        (json!({"expires_in": "soon"}), "expires_in"),
        (json!({"max_files": 0}), "max_files"),
        (json!({"max_files": 1.5}), "max_files"),
        (json!({"max_file_bytes": 0}), "max_file_bytes"),
        (json!({"max_file_bytes": 1u64 << 50}), "max_file_bytes"),
        (
            json!({"allowed_content_types": ["pdf"]}),
            "allowed_content_types[0]",
        ),
        (
            json!({"allowed_content_types": ["text/plain", "*/*"]}),
            "allowed_content_types[1]",
        ),
        (
            json!({"allowed_content_types": vec!["a/b"; 33]}),
            "allowed_content_types",
        ),
        (
            json!({"allowed_content_types": "text/plain"}),
            "allowed_content_types",
        ),
        (json!({"owner": "bob"}), "owner"),
        (json!([]), "object"),
    ] {
        assert_invalid_field(make(&app, &ada, &body).await, field, &body).await;
    }
    let url = app.url("/upload-links");
    assert_refuses_what_is_not_json(app.client.post(url.clone()).bearer_auth(&ada)).await;
    let tokenless = app.client.post(url).json(&json!({})).send().await.unwrap();
    assert_problem(tokenless, 401, "unauthorized").await;

    let link = upload_link(&app, &ada, json!(null)).await;
    let ends = link["expires_at"].as_str().unwrap();
    assert!(!ends.is_empty(), "a bound makes every link expire: {link}");
    let path = format!("/upload-links/{}", link["id"].as_str().unwrap());
    let others = app.client.delete(app.url(&path)).bearer_auth(&bob);
    assert_problem(others.send().await.unwrap(), 404, "not_found").await;
    let bobs: Value = app
        .get_as(&bob, "/upload-links")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, json!([]));
    let own = app.client.delete(app.url(&path)).bearer_auth(&ada);
    assert_eq!(own.send().await.unwrap().status(), 204);
    let again = app.client.delete(app.url(&path)).bearer_auth(&ada);
    assert_problem(again.send().await.unwrap(), 404, "not_found").await;
}

#[tokio::test]
async fn a_tus_upload_through_a_link_reaches_only_that_links_uploads() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let link = upload_link(
        &app,
        &ada,
        json!({"max_files": 1, "max_file_bytes": 100_000}),
    )
    .await;
    let other = upload_link(&app, &ada, json!({})).await;
    let (secret, other_secret) = (secret_of(&link), secret_of(&other));
    let visitor = Tus::of(&app).with_link(&secret);
    let bytes = random_bytes(50_000, 62);

    assert_problem(
        visitor.create(100_001, "big.bin").await,
        413,
        "file_too_large",
    )
    .await;
    let concat = visitor
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 10)
        .header("Upload-Concat", "partial")
        .send()
        .await
        .unwrap();
    assert_problem(concat, 400, "invalid_request").await;
    let path = visitor.created(bytes.len() as u64, "visit.bin").await;
    let sent = visitor.patch(&path, 0, bytes[..20_000].to_vec()).await;
    assert_eq!(sent.status(), 204);

    // Another link's holder, and a link's holder on its creator's own upload, reach nothing.
    let stranger = Tus::of(&app).with_link(&other_secret);
    // A HEAD has no body to read the code from.
    assert_eq!(stranger.head(&path).await.status(), 404);
    assert_problem(
        stranger.patch(&path, 20_000, vec![0]).await,
        404,
        "not_found",
    )
    .await;
    let owners = Tus::of(&app).with_token(&ada).created(10, "ada.bin").await;
    assert_eq!(visitor.head(&owners).await.status(), 404);
    assert_problem(visitor.delete(&owners).await, 404, "not_found").await;

    assert_eq!(visitor.offset(&path).await, 20_000);
    let rest = visitor.patch(&path, 20_000, bytes[20_000..].to_vec()).await;
    assert_eq!(rest.status(), 204);
    let file = header(&rest, "content-location");
    let stored: Value = app.get_as(&ada, &file).await.json().await.unwrap();
    assert_eq!(stored["sha256"], sha256_hex(&bytes));
    assert_eq!(stored["upload_link"], link["id"]);
    // The link took its one file.
    assert_problem(visitor.create(10, "more.bin").await, 410, "link_used_up").await;
    let terminated = Tus::of(&app).with_token(&ada).delete(&owners).await;
    assert_eq!(terminated.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_tus_upload_that_a_link_no_longer_takes_is_refused_at_its_end() {
    let app = app().await;
    let ada = app.user_with_token("ada").await;
    let link = upload_link(&app, &ada, json!({"max_files": 1})).await;
    let secret = secret_of(&link);
    let visitor = Tus::of(&app).with_link(&secret);
    // Two uploads begun while the link had room; the first to finish takes it.
    let first = visitor.created(5, "first.txt").await;
    let second = visitor.created(6, "second.txt").await;

    assert_eq!(
        visitor.patch(&first, 0, b"first".to_vec()).await.status(),
        204
    );
    let late = visitor.patch(&second, 0, b"second".to_vec()).await;

    assert_problem(late, 410, "link_used_up").await;
    let files = files_of(&app, &ada).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["filename"], "first.txt");
}

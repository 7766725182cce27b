//! Bearer tokens and ownership: who may call, and whose files they see.

use std::process::Output;

use intake::access::auth::{store, token};
use reqwest::Method;
use secrecy::ExposeSecret;
use time::{Duration, OffsetDateTime};

use crate::{
    child::ChildServer,
    helpers::{TestApp, assert_problem, file_part, random_bytes, sha256_hex, spawn_app_with},
};

async fn spawn_with_auth() -> TestApp {
    spawn_app_with(|s| s.auth.enabled = true).await
}

impl TestApp {
    /// Uploads a file as `token` and returns its id.
    async fn stored_as(&self, token: &str, bytes: Vec<u8>) -> String {
        let response = self
            .upload_as(token, file_part("mine.bin", bytes, None))
            .await;
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send().await.expect("request sent")
    }
}

/// Every route that reads or changes files, for the file `id`.
fn file_routes(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/files".into()),
        (Method::POST, "/upload".into()),
        (Method::POST, "/files".into()),
        (Method::GET, format!("/files/{id}")),
        (Method::DELETE, format!("/files/{id}")),
        (Method::GET, format!("/files/{id}/content")),
        (Method::HEAD, format!("/files/{id}/content")),
    ]
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_on_every_file_route() {
    let app = spawn_with_auth().await;
    let token = app.user_with_token("alice").await;
    let id = app.stored_as(&token, b"alice's".to_vec()).await;
    let revoked = app.token_for("alice", None).await;
    let revoked_id = store::list_tokens(&app.pool).await.unwrap()[1].id;
    store::revoke_token(&app.pool, revoked_id).await.unwrap();
    let expired = app
        .token_for(
            "alice",
            Some(OffsetDateTime::now_utc() - Duration::hours(1)),
        )
        .await;
    let (unknown, _) = token::generate().unwrap();

    let missing = [None];
    let invalid = [
        Some("Bearer".to_owned()),
        Some(format!("Basic {token}")),
        Some(format!("Bearer {token}x")),
        Some("Bearer not-a-token".to_owned()),
        Some(format!("Bearer {}", unknown.expose_secret())),
        Some(format!("Bearer {revoked}")),
        Some(format!("Bearer {expired}")),
    ];
    for (method, path) in file_routes(&id) {
        for header in missing.iter().chain(&invalid) {
            let response = app.call(method.clone(), &path, header.as_deref()).await;
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer realm=\"intake\""),
                "{challenge}"
            );
            assert_eq!(
                challenge.contains("error=\"invalid_token\""),
                header.is_some(),
                "{method} {path} {header:?}: {challenge}"
            );
            if method == Method::HEAD {
                assert_eq!(response.status(), 401);
            } else {
                assert_problem(response, 401, "unauthorized").await;
            }
        }
    }
    // Nothing was deleted by the refused DELETEs.
    let response = app
        .client
        .get(app.url(&format!("/files/{id}/content")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"alice's");
}

#[tokio::test]
async fn percent_encoded_paths_are_guarded_like_plain_ones() {
    let app = spawn_with_auth().await;
    for (method, path) in [
        (Method::GET, "/%66iles"),
        (Method::POST, "/%75pload"),
        (Method::GET, "/%75sers/1"),
    ] {
        let response = app.call(method, path, None).await;
        assert_problem(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn routes_that_hold_no_files_need_no_token() {
    let app = spawn_with_auth().await;
    for path in ["/health/live", "/health/ready", "/ping"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn another_users_file_is_404_on_every_route_and_stays_intact() {
    let app = spawn_with_auth().await;
    let alice = app.user_with_token("alice").await;
    let bob = app.user_with_token("bob").await;
    let bytes = random_bytes(10_000, 1);
    let id = app.stored_as(&alice, bytes.clone()).await;
    let bobs = app.stored_as(&bob, b"bob's".to_vec()).await;

    for method in [Method::GET, Method::DELETE] {
        let path = format!("/files/{id}");
        let response = app
            .call(method, &path, Some(&format!("Bearer {bob}")))
            .await;
        assert_problem(response, 404, "not_found").await;
    }
    let content = format!("/files/{id}/content");
    let response = app
        .call(Method::GET, &content, Some(&format!("Bearer {bob}")))
        .await;
    assert_problem(response, 404, "not_found").await;
    let response = app
        .call(Method::HEAD, &content, Some(&format!("Bearer {bob}")))
        .await;
    assert_eq!(response.status(), 404);

    for (token, own) in [(&alice, &id), (&bob, &bobs)] {
        let response = app
            .call(Method::GET, "/files", Some(&format!("Bearer {token}")))
            .await;
        let page: serde_json::Value = response.json().await.unwrap();
        let ids: Vec<_> = page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(
            ids,
            vec![serde_json::Value::from(own.as_str())],
            "each sees only their own"
        );
    }
    let response = app
        .call(Method::GET, &content, Some(&format!("Bearer {alice}")))
        .await;
    assert_eq!(
        sha256_hex(&response.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );
    let response = app
        .call(
            Method::DELETE,
            &format!("/files/{id}"),
            Some(&format!("Bearer {alice}")),
        )
        .await;
    assert_eq!(response.status(), 204);
    app.assert_consistent().await;
}

#[tokio::test]
async fn accounts_are_visible_only_to_their_owner() {
    let app = spawn_with_auth().await;
    let alice = app.user_with_token("alice").await;
    app.user_with_token("bob").await;
    let id = |name: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (alices, bobs) = (id("alice").await, id("bob").await);
    let bearer = format!("Bearer {alice}");

    let own = app
        .call(Method::GET, &format!("/users/{alices}"), Some(&bearer))
        .await;
    let own: serde_json::Value = own.json().await.unwrap();
    assert_eq!(own["name"], "alice");
    let other = app
        .call(Method::GET, &format!("/users/{bobs}"), Some(&bearer))
        .await;
    assert_problem(other, 404, "not_found").await;
    let anonymous = app
        .call(Method::GET, &format!("/users/{alices}"), None)
        .await;
    assert_problem(anonymous, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_token_records_when_it_was_last_used() {
    let app = spawn_with_auth().await;
    let token = app.user_with_token("alice").await;
    assert_eq!(
        store::list_tokens(&app.pool).await.unwrap()[0].last_used_at,
        None
    );
    app.call(Method::GET, "/files", Some(&format!("Bearer {token}")))
        .await;
    assert!(
        store::list_tokens(&app.pool).await.unwrap()[0]
            .last_used_at
            .is_some()
    );
}

#[tokio::test]
async fn with_auth_off_files_belong_to_the_anonymous_user_and_headers_are_ignored() {
    let app = spawn_app_with(|s| s.auth.enabled = false).await;
    let response = app
        .upload_as(
            "not-a-token",
            file_part("mine.bin", b"anyone's".to_vec(), None),
        )
        .await;
    assert_eq!(response.status(), 201);
    let owner: String =
        sqlx::query_scalar("SELECT u.name FROM files f JOIN users u ON u.id = f.owner_id")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(owner, "anonymous");
    assert_eq!(app.get("/files").await.status(), 200);
}

/// Runs `intake <args>` against the test's database, as an operator would.
async fn intake(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", app.db_url())
        .args(args)
        .output()
        .await
        .expect("the intake binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_command_line_creates_users_and_tokens_and_revokes_them() {
    let app = spawn_with_auth().await;
    let created = intake(
        &app,
        &["users", "create", "alice", "--email", "a@example.com"],
    )
    .await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&created.stdout).starts_with("created user alice"));

    let made = intake(
        &app,
        &["tokens", "create", "--user", "alice", "--expires-in", "30d"],
    )
    .await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    let token = text(&made.stdout).trim().to_owned();
    assert!(
        token.starts_with("intake_"),
        "stdout is the token alone: {token}"
    );
    let upload = app
        .upload_as(&token, file_part("mine.bin", b"via the CLI".to_vec(), None))
        .await;
    assert_eq!(upload.status(), 201);

    let listed = text(&intake(&app, &["tokens", "list"]).await.stdout);
    let row = listed
        .lines()
        .find(|line| line.contains("alice"))
        .expect("listed");
    assert!(row.ends_with("active"), "{row}");
    assert!(!listed.contains(&token), "the list never shows a token");
    let id = row.split_whitespace().next().unwrap().to_owned();
    assert!(
        text(&made.stderr).contains(&id),
        "creation names the id to revoke"
    );
    let expires = OffsetDateTime::now_utc() + Duration::days(30);
    assert!(row.contains(&expires.date().to_string()), "{row}");

    let revoked = intake(&app, &["tokens", "revoke", &id]).await;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let refused = app
        .upload_as(&token, file_part("mine.bin", b"too late".to_vec(), None))
        .await;
    assert_problem(refused, 401, "unauthorized").await;
    let listed = text(&intake(&app, &["tokens", "list"]).await.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("revoked")),
        "{listed}"
    );
}

#[tokio::test]
async fn the_command_line_lists_users_and_deletes_one_that_owns_nothing() {
    let app = spawn_with_auth().await;
    for name in ["alice", "bob"] {
        assert!(
            intake(&app, &["users", "create", name])
                .await
                .status
                .success()
        );
    }
    let token = app.token_for("bob", None).await;
    let upload = app
        .upload_as(&token, file_part("b.bin", b"bob's".to_vec(), None))
        .await;
    assert_eq!(upload.status(), 201);

    let listed = text(&intake(&app, &["users", "list"]).await.stdout);
    let names: Vec<&str> = listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(names, ["anonymous", "alice", "bob"], "{listed}");
    let bob = listed.lines().find(|l| l.contains("bob")).unwrap();
    assert_eq!(
        bob.split_whitespace().nth(3),
        Some("1"),
        "bob owns one file: {bob}"
    );

    let deleted = intake(&app, &["users", "delete", "alice"]).await;
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    for (name, refusal) in [
        ("bob", "still owns 1 files"),
        ("anonymous", "cannot be deleted"),
        ("alice", "no user named `alice`"),
    ] {
        let refused = intake(&app, &["users", "delete", name]).await;
        assert!(!refused.status.success(), "{name}");
        assert!(
            text(&refused.stderr).contains(refusal),
            "{}",
            text(&refused.stderr)
        );
    }
    let listed = text(&intake(&app, &["users", "list"]).await.stdout);
    assert!(
        !listed.contains("alice") && listed.contains("bob"),
        "{listed}"
    );
}

#[tokio::test]
async fn the_command_line_refuses_what_it_cannot_do() {
    let app = spawn_with_auth().await;
    assert!(
        intake(&app, &["users", "create", "alice"])
            .await
            .status
            .success()
    );
    for (args, message) in [
        (vec!["users", "create", "alice"], "already exists"),
        (
            vec!["tokens", "create", "--user", "nobody"],
            "no user named `nobody`",
        ),
        (
            vec!["tokens", "create", "--user", "anonymous"],
            "has no tokens",
        ),
        (
            vec![
                "tokens",
                "create",
                "--user",
                "alice",
                "--expires-in",
                "soon",
            ],
            "soon",
        ),
        (
            vec!["tokens", "revoke", "01a20352-ceb4-76a6-bc5f-361085800ea9"],
            "no token with id",
        ),
    ] {
        let output = intake(&app, &args).await;
        assert!(!output.status.success(), "{args:?}");
        assert!(
            text(&output.stderr).contains(message),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert!(store::list_tokens(&app.pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn tokens_never_appear_in_the_logs() {
    let db = spawn_with_auth().await;
    let token = db.user_with_token("alice").await;
    let root = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(
        &db.db_url(),
        root.path(),
        &[("APP__AUTH__ENABLED", "true"), ("RUST_LOG", "trace")],
    )
    .await;
    let client = reqwest::Client::new();
    let (unknown, _) = token::generate().unwrap();
    for header in [
        format!("Bearer {token}"),
        format!("Bearer {}", unknown.expose_secret()),
    ] {
        for path in ["/files", "/files/not-a-uuid", "/upload"] {
            client
                .get(server.url(path))
                .header("authorization", &header)
                .send()
                .await
                .unwrap();
        }
    }
    server.signal("TERM");
    let logs = server.remaining_logs().await;
    assert!(
        logs.contains("request rejected"),
        "the requests were logged"
    );
    for secret in [token.as_str(), unknown.expose_secret()] {
        assert!(!logs.contains(secret), "a token was logged");
        assert!(
            !logs.contains(&secret["intake_".len()..]),
            "a token was logged"
        );
    }
}

#[tokio::test]
async fn an_upload_whose_owner_is_deleted_before_it_commits_is_refused_and_stores_nothing() {
    let app = spawn_with_auth().await;
    let token = app.user_with_token("leaving").await;
    let (more, body) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    more.send(random_bytes(300_000, 7)).unwrap();
    let body = futures_util::stream::unfold(body, |mut body| async move {
        let chunk = body.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), body))
    });
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body)).file_name("late.bin");
    let upload = tokio::spawn({
        let (client, url, token) = (app.client.clone(), app.url("/upload"), token.clone());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .unwrap()
        }
    });
    // Authenticated and streaming: the user owns no file yet, so it may be deleted.
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == 1).await.unwrap();
    store::delete_user(&app.pool, "leaving").await.unwrap();

    more.send(random_bytes(1000, 8)).unwrap();
    drop(more);

    assert_problem(upload.await.unwrap(), 401, "unauthorized").await;
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

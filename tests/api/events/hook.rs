//! The upload hook (`events.pre_upload`): asked before an upload stores anything, on every
//! protocol; its no reaches the client in its words and leaves nothing behind, not even a
//! reservation of quota; a hook that cannot be asked refuses or allows as configured.

use intake::base::configuration::OnHookFailure;
use reqwest::multipart::Form;
use serde_json::{Value, json};

use super::{Endpoint, Received, SECRET, assert_described, signed_with};
use crate::{
    helpers::{
        GENEROUS_TIMEOUT_MS, TestApp, assert_consistent, assert_problem, file_part, random_bytes,
        reserved_port, spawn_app_with,
    },
    tus::{Tus, assert_nothing_resumable_left},
};

async fn spawn_with_hook(url: &str, on_failure: OnHookFailure) -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 10_000_000;
        s.events.pre_upload.url = url.into();
        s.events.pre_upload.secret = SECRET.into();
        s.events.pre_upload.timeout_ms = GENEROUS_TIMEOUT_MS;
        s.events.pre_upload.on_failure = on_failure;
    })
    .await
}

fn proposal(received: &Received) -> Value {
    assert!(
        signed_with(SECRET, received),
        "the hook's request is signed"
    );
    let body = received.json();
    assert_eq!(body["type"], "upload.proposed");
    body["data"].clone()
}

/// Refused unless the declared name ends in `.txt`, with a reason.
fn only_text(received: &Received) -> u16 {
    let name = received.json()["data"]["filename"]
        .as_str()
        .unwrap()
        .to_owned();
    if name.ends_with(".txt") { 200 } else { 403 }
}

async fn nothing_kept(app: &TestApp) {
    app.uploads_settled().await;
    assert!(
        assert_consistent(&app.pool, app.storage.path())
            .await
            .is_empty()
    );
    assert_nothing_resumable_left(app).await;
    assert_eq!(
        app.usage("alice").await,
        (0, 0, 0),
        "no quota stays reserved"
    );
}

#[tokio::test]
async fn the_hook_is_told_who_uploads_what_before_a_byte_is_stored_and_its_yes_lets_it_in() {
    let attached = json!({"project": "x1", "scanned": false});
    let yes = json!({"metadata": attached});
    let mut hook = Endpoint::answering(|_| 200, Some(yes)).await;
    let app = spawn_with_hook(&hook.url(), OnHookFailure::Refuse).await;
    let token = app.user_with_token("alice").await;

    let part = file_part("../notes.txt", b"hello".to_vec(), Some("text/plain"));
    let stored = app.upload_as(&token, part).await;
    assert_eq!(stored.status(), 201);
    let file: Value = stored.json().await.unwrap();
    assert_eq!(
        file["metadata"], attached,
        "the hook's metadata is the file's"
    );
    let asked = proposal(&hook.next().await);
    assert_eq!(asked["user"], "alice");
    assert!(asked["user_id"].is_i64());
    assert_eq!(asked["protocol"], "multipart");
    assert_eq!(
        asked["filename"], "notes.txt",
        "the name as it will be stored"
    );
    assert_eq!(asked["content_type"], "text/plain");
    assert_eq!(asked["size"], Value::Null);
    assert_eq!(asked["metadata"], json!({}));
    assert_eq!(asked["upload_link"], Value::Null);
    assert_described(&app, "UploadProposal", &asked).await;

    let tus = Tus::of(&app).with_token(&token);
    let created = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 1)
        // `filename` "r.txt", `filetype` "text/plain", `project` "x1", `flag` without a value.
        .header(
            "Upload-Metadata",
            "filename ci50eHQ=,filetype dGV4dC9wbGFpbg==,project eDE=,flag",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let asked = proposal(&hook.next().await);
    assert_eq!(asked["protocol"], "tus");
    assert_eq!(asked["filename"], "r.txt");
    assert_eq!(asked["content_type"], "text/plain");
    assert_eq!(asked["size"], 1);
    assert_eq!(
        asked["metadata"],
        json!({"filename": "r.txt", "filetype": "text/plain", "project": "x1", "flag": null})
    );
    // Kept with the upload until its file is made, on whichever instance finishes it.
    let other = app.another_instance(|s| s.auth.enabled = true).await;
    let path = crate::tus::header(&created, "location");
    let finished = Tus::of(&other)
        .with_token(&token)
        .patch(&path, 0, b"r".to_vec())
        .await;
    assert_eq!(finished.status(), 204);
    let file: Value = app
        .get_as(&token, &format!("/files/{}", crate::tus::id_of(&path)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(file["metadata"], attached);
    let listed: Value = app.get_as(&token, "/files").await.json().await.unwrap();
    assert!(
        listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["metadata"] == attached)
    );
}

#[tokio::test]
async fn a_yes_with_metadata_that_is_not_a_small_object_is_a_broken_hook() {
    let broken = json!({"metadata": ["not", "an", "object"]});
    let hook = Endpoint::answering(|_| 200, Some(broken)).await;
    let app = spawn_with_hook(&hook.url(), OnHookFailure::Refuse).await;
    let token = app.user_with_token("alice").await;
    let refused = app
        .upload_as(&token, file_part("a.txt", b"a".to_vec(), None))
        .await;
    assert_problem(refused, 503, "upload_hook_unavailable").await;
    nothing_kept(&app).await;
}

#[tokio::test]
async fn a_refusal_reaches_the_client_in_the_hooks_words_and_leaves_nothing() {
    let reason = json!({"reason": "only text files here"});
    let mut hook = Endpoint::answering(only_text, Some(reason)).await;
    let app = spawn_with_hook(&hook.url(), OnHookFailure::Refuse).await;
    let token = app.user_with_token("alice").await;

    let refused = app
        .upload_as(
            &token,
            file_part("tool.exe", random_bytes(100_000, 1), None),
        )
        .await;
    let problem = assert_problem(refused, 403, "upload_refused").await;
    assert_eq!(problem["detail"], "only text files here");
    assert_eq!(hook.next().await.status, 403);

    // A batch is all or nothing: the first file was let in (and stored), the second was not.
    let form = Form::new()
        .part(
            "a",
            file_part("a.txt", random_bytes(300_000, 2), Some("text/plain")),
        )
        .part("b", file_part("b.exe", random_bytes(300_000, 3), None));
    let refused = app
        .client
        .post(app.url("/files"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "upload_refused").await;
    assert_eq!(hook.next().await.status, 200);
    assert_eq!(hook.next().await.status, 403);

    let tus = Tus::of(&app).with_token(&token);
    let refused = tus.create(1_000_000, "big.exe").await;
    let problem = assert_problem(refused, 403, "upload_refused").await;
    assert_eq!(problem["detail"], "only text files here");
    assert_eq!(hook.next().await.status, 403);

    let refused = app
        .client
        .post(app.url("/resumable/"))
        .bearer_auth(&token)
        .header("Upload-Draft-Interop-Version", "8")
        .header("Upload-Complete", "?1")
        .header("Content-Disposition", r#"attachment; filename="setup.exe""#)
        .body(random_bytes(200_000, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["upload-complete"], "?0");
    assert_problem(refused, 403, "upload_refused").await;
    let asked = hook.next().await;
    assert_eq!(
        (asked.status, asked.json()["data"]["protocol"].clone()),
        (403, json!("ietf"))
    );
    nothing_kept(&app).await;
}

#[tokio::test]
async fn a_hook_that_cannot_be_asked_refuses_or_allows_as_configured() {
    let nowhere = format!("http://127.0.0.1:{}/hook", reserved_port());
    let refusing = spawn_with_hook(&nowhere, OnHookFailure::Refuse).await;
    let token = refusing.user_with_token("alice").await;
    let refused = refusing
        .upload_as(&token, file_part("a.txt", b"a".to_vec(), None))
        .await;
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_problem(refused, 503, "upload_hook_unavailable").await;
    let tus = Tus::of(&refusing).with_token(&token);
    assert_problem(
        tus.create(10, "a.txt").await,
        503,
        "upload_hook_unavailable",
    )
    .await;
    nothing_kept(&refusing).await;

    let allowing = spawn_with_hook(&nowhere, OnHookFailure::Allow).await;
    // The recorder is the process's: counted from here.
    let before = unavailable(&allowing).await;
    let token = allowing.user_with_token("alice").await;
    let stored = allowing
        .upload_as(&token, file_part("a.txt", b"a".to_vec(), None))
        .await;
    assert_eq!(stored.status(), 201);
    let tus = Tus::of(&allowing).with_token(&token);
    let path = tus.created(1, "b.txt").await;
    assert_eq!(tus.patch(&path, 0, b"b".to_vec()).await.status(), 204);
    assert_eq!(unavailable(&allowing).await - before, 2);
}

/// The hook calls that found it unavailable, as /metrics counts them.
async fn unavailable(app: &TestApp) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = r#"intake_upload_hook_calls_total{verdict="unavailable"} "#;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .map_or(0, |n| n.parse().unwrap())
}

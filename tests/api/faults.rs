use std::time::Duration;

use intake::base::configuration::StorageKind;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::{
    child::RawUpload,
    helpers::{
        GENEROUS_TIMEOUT_MS, NOT_INLINE, assert_problem, random_bytes, spawn_app, spawn_app_with,
        test_settings,
    },
    proxy::{FaultyProxy, Mode},
};

#[tokio::test]
async fn a_client_that_aborts_mid_body_leaves_no_row_and_no_object() {
    let app = spawn_app().await;
    let upload = RawUpload::start(app.host(), 10 * 1024 * 1024, 512 * 1024).await;
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == 1).await.unwrap();

    drop(upload);

    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
    let ok = app.upload_file("after.txt", b"after".to_vec(), None).await;
    assert_eq!(ok.status(), 201, "the server is still serving");
}

#[tokio::test]
async fn a_body_that_goes_silent_is_dropped_with_408_while_others_are_served() {
    let app = spawn_app_with(|s| s.upload.idle_timeout_secs = 1).await;
    let mut silent = RawUpload::start(app.host(), 1024 * 1024, 4096).await;
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == 1).await.unwrap();

    let other = app.upload_file("other.txt", b"served".to_vec(), None).await;
    assert_eq!(other.status(), 201, "served while the silent upload waits");
    let mut response = Vec::new();
    silent.stream.read_to_end(&mut response).await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains(r#""code":"upload_timeout""#),
        "{response}"
    );
    app.uploads_settled().await;
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_400_and_stores_nothing() {
    let app = spawn_app().await;
    let mut truncated = RawUpload::start(app.host(), 1024 * 1024, 200 * 1024).await;
    // The client is done sending, short of its Content-Length, but still listens.
    truncated.stream.shutdown().await.unwrap();

    let mut response = Vec::new();
    truncated.stream.read_to_end(&mut response).await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("malformed_multipart"), "{response}");
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn postgres_unavailable_is_503_keeps_no_object_and_recovers() {
    let app = spawn_app_with(|s| s.database.acquire_timeout_secs = 1).await;
    // Both sides of `storage.inline_max_bytes`: one in Postgres, one an object.
    for (name, size) in [("before.txt", 6), ("before.bin", NOT_INLINE)] {
        let stored = app.upload_file(name, random_bytes(size, 7), None).await;
        assert_eq!(stored.status(), 201, "{name}");
    }
    let before = app.object_ids().await;
    assert_eq!(before.len(), 1);

    app.set_connections_allowed(false).await;
    let refused = app
        .upload_file("during.bin", random_bytes(300_000, 8), None)
        .await;
    let ready = app.get("/health/ready").await;

    assert_problem(refused, 503, "database_unavailable").await;
    assert_problem(ready, 503, "database_unavailable").await;
    assert_eq!(
        app.object_ids().await,
        before,
        "no object was left by the refused upload"
    );
    app.uploads_settled().await;

    app.set_connections_allowed(true).await;
    // (A bucket's intents are rows: they can be read only now.)
    assert!(app.leftovers().await.is_empty());
    let after = app.upload_file("after.txt", b"after".to_vec(), None).await;
    assert_eq!(
        after.status(),
        201,
        "the same server recovers without a restart"
    );
    assert_eq!(app.get("/health/ready").await.status(), 200);
    assert_eq!(app.assert_consistent().await.len(), 3);
}

#[tokio::test]
async fn a_postgres_that_accepts_and_never_answers_is_503_within_the_acquire_timeout() {
    // Between the app and Postgres: a proxy that, once told to hang, takes every byte and
    // answers none, on the open connections too. Nothing refuses: only a bound can end a wait.
    let direct = reqwest::Url::parse(test_settings().database.url.expose_secret()).unwrap();
    let proxy = FaultyProxy::start(direct.port().unwrap_or(5432)).await;
    let app = spawn_app_with(|s| {
        s.database.acquire_timeout_secs = 1;
        let mut url = reqwest::Url::parse(s.database.url.expose_secret()).unwrap();
        url.set_port(Some(proxy.port)).unwrap();
        s.database.url = SecretString::from(url.to_string());
    })
    .await;
    for (name, size) in [("before.txt", 6), ("before.bin", NOT_INLINE)] {
        let stored = app.upload_file(name, random_bytes(size, 7), None).await;
        assert_eq!(stored.status(), 201, "{name}");
    }
    let before = app.object_ids().await;

    proxy.set(Mode::Hang);
    // The client waits far longer than `database.acquire_timeout_secs`: the answer is bounded
    // by the server, and a server that waited for Postgres forever fails here.
    let bounded = Duration::from_millis(GENEROUS_TIMEOUT_MS);
    let refused = tokio::time::timeout(
        bounded,
        app.upload_file("during.bin", random_bytes(300_000, 8), None),
    )
    .await
    .expect("the upload was answered while Postgres stayed silent");
    let ready = tokio::time::timeout(bounded, app.get("/health/ready"))
        .await
        .expect("readiness was answered while Postgres stayed silent");

    assert_eq!(proxy.mode(), Mode::Hang);
    assert_problem(refused, 503, "database_unavailable").await;
    assert_problem(ready, 503, "database_unavailable").await;
    app.uploads_settled().await;
    assert_eq!(app.object_ids().await, before, "no object was left behind");

    proxy.set(Mode::Forward);
    let after = app
        .upload_file("after.bin", random_bytes(NOT_INLINE, 9), None)
        .await;
    assert_eq!(
        after.status(),
        201,
        "the same server recovers without a restart"
    );
    assert_eq!(app.assert_consistent().await.len(), 3);
}

#[tokio::test]
async fn the_start_up_sweep_settles_what_a_crashed_instance_left() {
    // The journal is the filesystem backend's (the bucket's intents: `s3::…`).
    let first = spawn_app_with(|s| s.storage.kind = StorageKind::Fs).await;
    let kept: serde_json::Value = first
        .upload_file("kept.txt", b"kept".to_vec(), None)
        .await
        .json()
        .await
        .unwrap();
    let root = first.storage.path().to_owned();
    // A crashed instance: its journal holds a half-written upload that was already linked at
    // its object path (crash between link and commit), and a stray file. Its lock is not held.
    let dead = root.join("tmp").join(Uuid::now_v7().to_string());
    std::fs::create_dir(&dead).unwrap();
    let orphan = Uuid::now_v7();
    std::fs::write(dead.join(orphan.to_string()), b"partial").unwrap();
    let hex = orphan.simple().to_string();
    let object_dir = root.join("objects").join(&hex[28..30]).join(&hex[30..32]);
    std::fs::create_dir_all(&object_dir).unwrap();
    std::fs::hard_link(
        dead.join(orphan.to_string()),
        object_dir.join(orphan.to_string()),
    )
    .unwrap();
    std::fs::write(dead.join("garbage"), b"?").unwrap();
    assert_ne!(first.object_ids().await, first.row_ids().await);

    let db_url = first.db_url();
    let second = spawn_app_with(|s| {
        s.storage.kind = StorageKind::Fs;
        s.storage.root = root.clone();
        s.database.url = db_url.into();
    })
    .await;

    assert!(!dead.exists());
    let rows = first.assert_consistent().await;
    assert_eq!(
        rows.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        [kept["id"].as_str().unwrap()]
    );
    let content = second
        .get(kept["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&content[..], b"kept");
}

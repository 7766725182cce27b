//! Faults that end the process: SIGKILL mid-upload, SIGTERM mid-upload.

use crate::{
    child::{ChildServer, RawUpload},
    helpers::{
        TestApp, assert_consistent, journal_files, random_bytes, sha256_hex, spawn_app_with,
    },
};

/// The database the child servers share, through an in-process server that sweeps only once,
/// at its start, before any child runs: it has a storage root of its own, so a later sweep of
/// it could take a child's work for a dead instance's.
async fn database() -> TestApp {
    spawn_app_with(|s| s.storage.sweep_interval_secs = 365 * 24 * 3600).await
}

async fn reservations(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM quota_reservations")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn kill_9_mid_upload_leaves_nothing_after_restart_and_keeps_acknowledged_files() {
    let db = database().await;
    let root = tempfile::tempdir().unwrap();
    // With a quota, so that the upload holds a reservation when it is killed.
    let quota = [("APP__AUTH__DEFAULT_QUOTA_BYTES", "1073741824")];
    let mut server = ChildServer::start(&db.db_url(), root.path(), &quota).await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for seed in 0..3 {
        let bytes = random_bytes(200_000 + seed as usize, seed);
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("kept.bin"),
        );
        let response = client
            .post(server.url("/upload"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        acknowledged.push((body["url"].as_str().unwrap().to_owned(), sha256_hex(&bytes)));
    }

    let upload = RawUpload::start(&server.address, 64 * 1024 * 1024, 1024 * 1024).await;
    server.wait_for_raw_upload().await;
    server.child.kill().await.unwrap();
    drop(upload);
    // The partial upload, and maybe the entries of acknowledged uploads that were still being
    // removed: the restart settles them all.
    assert!(
        !journal_files(root.path()).is_empty(),
        "the kill left a partial upload behind"
    );
    assert_eq!(
        reservations(&db).await,
        1,
        "the kill left a reservation behind"
    );

    let restarted = ChildServer::start(&db.db_url(), root.path(), &quota).await;

    assert_consistent(&db.pool, root.path()).await;
    assert_eq!(reservations(&db).await, 0);
    intake::access::quota::apply_changes(&db.pool, None)
        .await
        .unwrap();
    let (used, reserved): (i64, i64) =
        sqlx::query_as("SELECT used_bytes, reserved_bytes FROM users WHERE name = 'anonymous'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (used, reserved),
        ((0..3).map(|seed| 200_000 + seed).sum(), 0)
    );
    for (url, sha256) in acknowledged {
        let bytes = client
            .get(restarted.url(&url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha256_hex(&bytes), sha256);
    }
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_upload_finish_then_exits_0() {
    let db = database().await;
    let root = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(&db.db_url(), root.path(), &[]).await;
    let upload = RawUpload::start(&server.address, 4 * 1024 * 1024, 512 * 1024).await;
    server.wait_for_raw_upload().await;

    server.signal("TERM");
    // Logged once the listening socket is closed.
    server.wait_for_log("accept thread stopped").await;

    assert!(
        !is_served(&server.address).await,
        "no new connection is served once stopping"
    );
    let response = upload.finish().await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let status = server.child.wait().await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(assert_consistent(&db.pool, root.path()).await.len(), 1);
}

#[tokio::test]
async fn sigterm_cleans_up_an_upload_that_outlives_the_shutdown_timeout() {
    let db = database().await;
    let root = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(
        &db.db_url(),
        root.path(),
        &[("APP__SERVER__SHUTDOWN_TIMEOUT_SECS", "1")],
    )
    .await;
    let upload = RawUpload::start(&server.address, 4 * 1024 * 1024, 512 * 1024).await;
    server.wait_for_raw_upload().await;

    server.signal("TERM");
    let status = server.child.wait().await.unwrap();

    assert!(status.success(), "{status}");
    drop(upload);
    assert!(assert_consistent(&db.pool, root.path()).await.is_empty());
}

/// Whether a new connection gets an answer. Once the accept loop has stopped, a connection is
/// either refused or, if the kernel queued it before the socket closed, reset unanswered.
async fn is_served(address: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return false;
    };
    let request =
        format!("GET /health/live HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    // A guard against a hang, not a wait: an unserved connection is reset or refused at once.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    );
    let _ = read.await;
    !answer.is_empty()
}

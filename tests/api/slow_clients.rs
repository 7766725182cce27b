//! Slow clients: an upload waiting for its client holds no thread, a body slower than the
//! minimum rate is cut off, and a checkout body has a deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    child::RawUpload,
    helpers::{random_bytes, sha256_hex, spawn_app_with},
};

/// Trickling uploads per blocking thread: far more uploads than threads.
const TRICKLES: usize = 64;
const BLOCKING_THREADS: usize = 4;

#[tokio::test]
async fn many_trickling_uploads_do_not_starve_uploads_downloads_or_readiness() {
    let app = spawn_app_with(|s| {
        s.server.workers = 1;
        s.server.max_blocking_threads = BLOCKING_THREADS;
        // The trickles must stay open for as long as the test runs.
        s.upload.min_bytes_per_sec = 0;
        // Many clients from one address: the cap per caller is not what is tested here.
        s.upload.max_in_flight_per_user = 0;
    })
    .await;
    let mut trickles = Vec::new();
    for _ in 0..TRICKLES {
        // More than a batch of the file (so that it is being written), then nothing for now.
        trickles.push(RawUpload::start(app.host(), 1024 * 1024, 300 * 1024).await);
    }
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == TRICKLES).await.unwrap();

    // A client that gives up rather than hanging, should the server be starved.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let bytes = random_bytes(1024 * 1024, 70);
    let stored: serde_json::Value = client
        .post(app.url("/upload"))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            crate::helpers::file_part("normal.bin", bytes.clone(), None),
        ))
        .send()
        .await
        .expect("an upload is served while the trickles wait")
        .json()
        .await
        .unwrap();
    let download = client
        .get(app.url(stored["url"].as_str().unwrap()))
        .send()
        .await
        .expect("a download is served while the trickles wait");
    assert_eq!(download.status(), 200);
    assert_eq!(
        sha256_hex(&download.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );
    let ready = client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("readiness answers while the trickles wait");
    assert_eq!(ready.status(), 200);
    // The bound: all three were answered while every trickle still held its upload open (none
    // ended, timed out or was refused meanwhile), not once they had gone. How fast is for the
    // benchmark (scripts/bench.sh), not for a test.
    let open = *in_flight.wait_for(|n| *n <= TRICKLES).await.unwrap();
    assert_eq!(open, TRICKLES, "every trickle still open");
    // And each of them still completes once its client sends the rest.
    let finished = futures_util::future::join_all(trickles.into_iter().map(RawUpload::finish));
    for response in finished.await {
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
    app.uploads_settled().await;
    assert_eq!(app.assert_consistent().await.len(), TRICKLES + 1);
}

/// An app that wants 100,000 bytes/s from the first second of a body on.
async fn spawn_demanding_a_fast_body() -> crate::helpers::TestApp {
    spawn_app_with(|s| {
        s.upload.min_bytes_per_sec = 100_000;
        s.upload.min_rate_window_secs = 1;
        s.upload.min_rate_grace_secs = 0;
    })
    .await
}

/// The raw answer, checked to be `408 upload_timeout`.
fn assert_timed_out(raw: &[u8]) -> String {
    let response = String::from_utf8_lossy(raw).into_owned();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains(r#""code":"upload_timeout""#),
        "{response}"
    );
    response
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_408_and_keeps_nothing() {
    let app = spawn_demanding_a_fast_body().await;
    // 4 KiB sent, then nothing: less than the minimum over the first window, long before
    // the idle timeout.
    let mut slow = RawUpload::start(app.host(), 1024 * 1024, 4096).await;

    let mut response = Vec::new();
    slow.stream.read_to_end(&mut response).await.unwrap();

    let response = assert_timed_out(&response);
    assert!(response.contains("too slow"), "{response}");
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_checkout_body_that_never_arrives_is_408() {
    let app = spawn_app_with(|s| s.server.request_body_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    let head = format!(
        "POST /checkout HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"customer_email\":",
        app.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();

    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();

    assert_timed_out(&response);
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 0);
}

#[tokio::test]
async fn a_client_still_trickling_after_its_408_is_disconnected() {
    let app = spawn_demanding_a_fast_body().await;
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    // Keep-alive (no `Connection: close`): the server decides whether the connection lasts.
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary=B\r\n\
         Content-Length: 1000000\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"t.bin\"\r\n\r\n",
        app.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The client's own pace: 32 bytes every 100 ms, until the server hangs up.
    let trickle = tokio::spawn(async move {
        while writer.write_all(&[b'x'; 32]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut response = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut response))
        .await
        .expect("the server closes the connection after its answer");
    trickle.abort();

    assert!(closed.is_ok() || !response.is_empty(), "{closed:?}");
    let response = assert_timed_out(&response);
    assert!(response.contains("connection: close"), "{response}");
    assert!(app.assert_consistent().await.is_empty());
}

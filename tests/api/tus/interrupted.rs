//! Resumable uploads interrupted: a PATCH that stalls, is cut, or dies with its instance; one
//! taken over by a newer PATCH; one that expires. What was received is kept, and the SHA-256
//! continues from the state saved with it.

use bytes::Bytes;
use intake::base::configuration::{Settings, StorageKind};
use reqwest::Response;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::{
    OCTETS, Tus, assert_nothing_resumable_left, count, file_object, header, id_of, wait_until_gone,
};
use crate::{
    child::ChildServer,
    helpers::{
        NOT_INLINE, TestApp, assert_problem, cut_request, random_bytes, sha256_hex, spawn_app,
        spawn_app_with,
    },
};

/// Starts a PATCH at offset 0 on `on` whose body stops after `first` bytes, and waits until it
/// holds the upload's lease (its server counts it in flight). Returns the body's sender and
/// the request.
async fn stalled_patch(
    on: &TestApp,
    path: &str,
    first: &[u8],
) -> (
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    tokio::task::JoinHandle<Response>,
) {
    let (sender, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let request = {
        let (tus, path) = (Tus::of(on), path.to_owned());
        let body = reqwest::Body::wrap_stream(tokio_stream(body));
        tokio::spawn(async move { tus.patch(&path, 0, body).await })
    };
    sender
        .send(Ok(Bytes::copy_from_slice(first)))
        .await
        .unwrap();
    let mut in_flight = on.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == 1).await.unwrap();
    (sender, request)
}

async fn a_newer_patch_takes_over(first: &TestApp, second: &TestApp) {
    let bytes = random_bytes(200_000, 3);
    let path = Tus::of(first)
        .created(bytes.len() as u64, "contended.bin")
        .await;
    // A client whose connection died without a word: its PATCH still holds the lease.
    let (_sender, stalled) = stalled_patch(first, &path, &bytes[..1000]).await;

    // The client comes back with what it thought was the offset.
    let tus = Tus::of(second);
    let newer = tus.patch(&path, 0, bytes.clone()).await;

    let old = stalled.await.unwrap();
    assert_problem(old, 423, "upload_locked").await;
    let body = assert_problem(newer, 409, "offset_mismatch").await;
    assert!(
        body["detail"].as_str().unwrap().contains("has 1000 bytes"),
        "{body}"
    );
    assert_eq!(
        tus.offset(&path).await,
        1000,
        "the old PATCH kept what it received"
    );
    assert_eq!(
        tus.patch(&path, 1000, bytes[1000..].to_vec())
            .await
            .status(),
        204
    );
    assert_eq!(
        file_object(second, id_of(&path)).await["sha256"],
        sha256_hex(&bytes)
    );
}

#[tokio::test]
async fn a_newer_patch_takes_an_upload_over_from_one_still_running() {
    let app = spawn_app().await;
    a_newer_patch_takes_over(&app, &app).await;
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_newer_patch_on_another_instance_takes_the_upload_over_too() {
    let first = spawn_app().await;
    let second = first.another_instance(|_| {}).await;
    a_newer_patch_takes_over(&first, &second).await;
    assert_nothing_resumable_left(&first).await;
}

#[tokio::test]
async fn a_lease_whose_running_holder_does_not_let_go_is_423() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let path = tus.created(10, "held.bin").await;
    // An instance that runs (its advisory lock is held) but does not answer release requests.
    let holder = Uuid::now_v7();
    let key = i64::from_be_bytes(holder.as_bytes()[8..].try_into().unwrap());
    let mut running = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *running)
        .await
        .unwrap();
    sqlx::query("UPDATE resumable_uploads SET lease = gen_random_uuid(), lease_holder = $1")
        .bind(holder)
        .execute(&app.pool)
        .await
        .unwrap();

    let refused = tus.patch(&path, 0, "0123456789").await;

    assert_eq!(header(&refused, "retry-after"), "1");
    let body = assert_problem(refused, 423, "upload_locked").await;
    assert!(body["detail"].as_str().unwrap().contains("another request"));
    assert_problem(tus.delete(&path).await, 423, "upload_locked").await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *running)
        .await
        .unwrap();
    assert_eq!(
        tus.patch(&path, 0, "0123456789").await.status(),
        204,
        "its instance is gone"
    );
    assert_nothing_resumable_left(&app).await;
}

fn tokio_stream(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Sends a PATCH's head and the first `sent` bytes of a body of `total`, then hangs up.
async fn cut_patch(address: &str, path: &str, offset: u64, total: usize, sent: &[u8]) {
    let offset = offset.to_string();
    let fields = [
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Offset", offset.as_str()),
        ("Content-Type", OCTETS),
    ];
    cut_request(address, &format!("PATCH {path}"), &fields, total, sent).await;
}

#[tokio::test]
async fn a_patch_cut_mid_body_keeps_the_bytes_that_arrived() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(3_000_000, 4);
    let path = tus.created(bytes.len() as u64, "cut.bin").await;

    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.borrow_and_update();
    cut_patch(app.host(), &path, 0, bytes.len(), &bytes[..1_234_567]).await;
    // The PATCH counts as in flight from its lease until its progress is recorded.
    in_flight.changed().await.unwrap();
    in_flight.wait_for(|n| *n == 0).await.unwrap();

    // Every byte the handler received is kept. When the connection ends, actix-web drops what
    // it had read from the socket but not handed over yet (at most its read buffer: tens of
    // KiB), so the offset may stop a little short of what was sent: the resume sends it again.
    let offset = tus.offset(&path).await as usize;
    assert!(
        (1_234_567 - 128 * 1024..=1_234_567).contains(&offset),
        "{offset}"
    );
    let rest = tus
        .patch(&path, offset as u64, bytes[offset..].to_vec())
        .await;
    assert_eq!(rest.status(), 204);
    assert_eq!(
        file_object(&app, id_of(&path)).await["sha256"],
        sha256_hex(&bytes)
    );
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn an_expired_upload_answers_410_until_the_sweep_removes_it() {
    let quota = |s: &mut Settings| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 300_000;
    };
    let app = spawn_app_with(quota).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let path = tus.created(200_000, "late.bin").await;
    assert_eq!(
        tus.patch(&path, 0, random_bytes(150_000, 4)).await.status(),
        204
    );
    // Its time runs out: the upload keeps its bytes and its reservation until it is swept.
    sqlx::query("UPDATE resumable_uploads SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(
        tus.head(&path).await.status(),
        410,
        "HEAD answers have no body"
    );
    assert_problem(
        tus.patch(&path, 150_000, vec![1u8; 10]).await,
        410,
        "upload_expired",
    )
    .await;
    assert_problem(tus.create(200_000, "more").await, 413, "quota_exceeded").await;
    assert_eq!(count(&app, "quota_reservations").await, 1);
    // The sweep of the instance that starts next runs before it listens.
    let next = app.another_instance(quota).await;

    let tus = Tus::of(&next).with_token(&token);
    assert_eq!(tus.head(&path).await.status(), 404);
    assert_nothing_resumable_left(&app).await;
    // The whole quota is the user's again.
    let again = tus.created(300_000, "fits.bin").await;
    assert_eq!(tus.delete(&again).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_patch_killed_with_its_instance_resumes_on_another_that_continues_the_sha256() {
    // A child process to kill: on disk (the bucket's suite skips child processes).
    let db = spawn_app_with(|s| s.storage.kind = StorageKind::Fs).await;
    let root = db.storage.path().to_owned();
    let mut first = ChildServer::start(&db.db_url(), &root, &[]).await;
    let base = format!("http://{}", first.address);
    let tus = Tus::new(&base);
    let bytes = random_bytes(3 * 1024 * 1024, 5);
    let path = tus.created(bytes.len() as u64, "survivor.bin").await;
    let mb = 1024 * 1024;
    assert_eq!(
        tus.patch(&path, 0, bytes[..mb].to_vec()).await.status(),
        204
    );

    let _open = cut_patch_kept_open(&mut first, &path, mb as u64, &bytes[mb..], mb).await;
    first.child.kill().await.unwrap();
    wait_until_gone(&db, &path).await;

    let second = db
        .another_instance(|s| s.storage.kind = StorageKind::Fs)
        .await;
    let tus = Tus::of(&second);
    assert_eq!(
        tus.offset(&path).await,
        mb as u64,
        "the killed PATCH recorded nothing"
    );
    let rest = tus.patch(&path, mb as u64, bytes[mb..].to_vec()).await;
    assert_eq!(
        rest.status(),
        204,
        "the dead instance's lease was taken over"
    );
    assert_eq!(
        file_object(&second, id_of(&path)).await["sha256"],
        sha256_hex(&bytes)
    );
    assert_nothing_resumable_left(&db).await;
}

/// Starts a PATCH of `body` at `offset` on `server` and sends `sent` bytes of it, leaving the
/// connection open, once the server is receiving it.
async fn cut_patch_kept_open(
    server: &mut ChildServer,
    path: &str,
    offset: u64,
    body: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    let address = server.address.clone();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    server
        .wait_for(|e| e["message"] == "receiving a PATCH" && e["offset"] == offset)
        .await;
    stream
}

#[tokio::test]
async fn a_long_patch_records_its_progress_so_that_a_crash_loses_little() {
    let db = spawn_app_with(|s| s.storage.kind = StorageKind::Fs).await;
    let root = db.storage.path().to_owned();
    let every_mib = [("APP__TUS__CHECKPOINT_BYTES", "1048576")];
    let mut first = ChildServer::start(&db.db_url(), &root, &every_mib).await;
    let tus = Tus::new(&format!("http://{}", first.address));
    let mb = 1024 * 1024;
    let bytes = random_bytes(5 * mb, 6);
    let path = tus.created(bytes.len() as u64, "one-patch.bin").await;

    // The whole file in one PATCH, as tus-js-client sends by default; 3.5 MiB of it arrive.
    // Progress is recorded at the first batch a MiB past the last record, and where batches end
    // depends on how the bytes came off the socket: a record past 2 MiB is certain, one past
    // 3 MiB is not.
    let sent = 3 * mb + mb / 2;
    let _open = cut_patch_kept_open(&mut first, &path, 0, &bytes, sent).await;
    let progress = |e: &Value| e["message"] == "progress recorded";
    let recorded = first
        .wait_for(|e| progress(e) && e["offset"].as_u64().is_some_and(|o| o >= 2 * mb as u64))
        .await;
    first.child.kill().await.unwrap();
    // The last record it logged before it died.
    let logged = (first.remaining_logs().await.lines())
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(progress)
        .filter_map(|e| e["offset"].as_u64())
        .chain(recorded["offset"].as_u64())
        .max()
        .unwrap();
    wait_until_gone(&db, &path).await;

    let second = db
        .another_instance(|s| s.storage.kind = StorageKind::Fs)
        .await;
    let tus = Tus::of(&second);
    let offset = tus.offset(&path).await;
    // All that was recorded survives (a record committed in the instant before the kill may
    // not have had its log line), and nothing beyond what was sent.
    assert!(
        (logged..=sent as u64).contains(&offset),
        "{offset} after {logged} recorded"
    );
    let rest = tus
        .patch(&path, offset, bytes[offset as usize..].to_vec())
        .await;
    assert_eq!(rest.status(), 204);
    assert_eq!(
        file_object(&second, id_of(&path)).await["sha256"],
        sha256_hex(&bytes)
    );
    assert_nothing_resumable_left(&db).await;
}

/// The file's SHA-256 continues from the state saved with the offset, rather than from reading
/// the stored bytes again: with the saved state swapped for another upload's (of other bytes,
/// as long), the file gets the hash of those other bytes followed by the rest. No real upload
/// has its state swapped; this is how the test can tell the two ways apart.
#[tokio::test]
async fn the_sha256_continues_from_the_saved_state_not_from_the_stored_bytes() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let (first, other, rest) = (
        random_bytes(NOT_INLINE, 1),
        random_bytes(NOT_INLINE, 2),
        random_bytes(NOT_INLINE, 3),
    );
    let path = tus.created(2 * NOT_INLINE as u64, "resumed.bin").await;
    let donor = tus.created(2 * NOT_INLINE as u64, "donor.bin").await;
    assert_eq!(tus.patch(&path, 0, first.clone()).await.status(), 204);
    assert_eq!(tus.patch(&donor, 0, other.clone()).await.status(), 204);
    sqlx::query(
        "UPDATE resumable_uploads SET hash_state = (SELECT hash_state FROM resumable_uploads WHERE id = $2) WHERE id = $1",
    )
    .bind(id_of(&path))
    .bind(id_of(&donor))
    .execute(&app.pool)
    .await
    .unwrap();

    let last = tus.patch(&path, NOT_INLINE as u64, rest.clone()).await;

    assert_eq!(last.status(), 204);
    let stored = file_object(&app, id_of(&path)).await;
    assert_eq!(
        stored["sha256"],
        sha256_hex(&[other, rest.clone()].concat())
    );
    let content = app.get(&format!("/files/{}/content", id_of(&path))).await;
    assert_eq!(content.bytes().await.unwrap(), [first, rest].concat());
}

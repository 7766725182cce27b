//! Resumable uploads (tus 1.0) through our own client code: every status the protocol and
//! our access control give, and what stays in storage and Postgres. Real tus clients:
//! `tus_clients`.

use bytes::Bytes;
use intake::base::configuration::{Settings, StorageKind};
use reqwest::{Response, header::HeaderMap};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::{
    child::ChildServer,
    helpers::{
        NOT_INLINE, TestApp, assert_problem, random_bytes, sha256_hex, spawn_app, spawn_app_with,
    },
};

pub const OCTETS: &str = "application/offset+octet-stream";

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

/// A tus client of our own: one request per call, every header visible to the test.
pub struct Tus<'a> {
    pub base: String,
    pub token: Option<&'a str>,
    pub client: reqwest::Client,
}

impl<'a> Tus<'a> {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: None,
            client: reqwest::Client::new(),
        }
    }

    pub fn of(app: &TestApp) -> Self {
        Self::new(&app.address)
    }

    pub fn with_token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Tus-Resumable", "1.0.0");
        match self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn create(&self, length: u64, filename: &str) -> Response {
        self.request(reqwest::Method::POST, "/tus/")
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata(filename))
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload whose length comes later (`Upload-Defer-Length: 1`).
    pub async fn create_deferred(&self) -> Response {
        self.request(reqwest::Method::POST, "/tus/")
            .header("Upload-Defer-Length", "1")
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload and returns its path (`/tus/{id}`).
    pub async fn created(&self, length: u64, filename: &str) -> String {
        let response = self.create(length, filename).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        header(&response, "location")
    }

    pub async fn patch(
        &self,
        path: &str,
        offset: u64,
        bytes: impl Into<reqwest::Body>,
    ) -> Response {
        self.request(reqwest::Method::PATCH, path)
            .header("Upload-Offset", offset)
            .header("Content-Type", OCTETS)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(reqwest::Method::HEAD, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn offset(&self, path: &str) -> u64 {
        let head = self.head(path).await;
        assert_eq!(head.status(), 200);
        number(head.headers(), "upload-offset")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }
}

fn metadata(filename: &str) -> String {
    use base64::Engine;
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(filename)
    )
}

pub fn id_of(path: &str) -> Uuid {
    path.trim_start_matches("/tus/").parse().unwrap()
}

async fn file_object(app: &TestApp, id: Uuid) -> Value {
    let response = app.get(&format!("/files/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Nothing of a resumable upload is left but its file, if it became one.
pub async fn assert_nothing_resumable_left(app: &TestApp) {
    app.assert_consistent().await;
    assert_eq!(count(app, "resumable_uploads").await, 0, "upload rows left");
    assert_eq!(
        count(app, "quota_reservations").await,
        0,
        "reservations left"
    );
    if app.bucket.is_none() {
        let uploads = app.storage.path().join("uploads");
        let left: Vec<_> = std::fs::read_dir(uploads).unwrap().collect();
        assert!(left.is_empty(), "upload files left: {left:?}");
    }
}

#[tokio::test]
async fn options_tells_what_the_server_supports_without_a_token() {
    let app = spawn_app_with(|s| s.auth.enabled = true).await;

    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/tus/"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "tus-version"), "1.0.0");
    assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    assert_eq!(header(&response, "tus-max-size"), "1073741824");
    assert_eq!(header(&response, "tus-checksum-algorithm"), "sha1,sha256");
    let extensions = header(&response, "tus-extension");
    for extension in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    ] {
        assert!(extensions.split(',').any(|e| e == extension), "{extension}");
    }
}

#[tokio::test]
async fn an_upload_in_three_patches_becomes_a_file_with_its_sha256() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 1);
    let path = tus.created(bytes.len() as u64, "../../report.bin").await;
    let head = tus.head(&path).await;
    assert_eq!(header(&head, "upload-offset"), "0");
    assert_eq!(header(&head, "upload-length"), bytes.len().to_string());
    assert_eq!(
        header(&head, "upload-metadata"),
        metadata("../../report.bin")
    );
    assert!(header(&head, "upload-expires").ends_with(" GMT"));
    assert_eq!(header(&head, "cache-control"), "no-store");

    let cuts = [0, 1024 * 1024, 2 * 1024 * 1024 + 5, bytes.len()];
    for window in cuts.windows(2) {
        let response = tus
            .patch(
                &path,
                window[0] as u64,
                bytes[window[0]..window[1]].to_vec(),
            )
            .await;
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, "upload-offset"), window[1].to_string());
        assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    }

    let id = id_of(&path);
    let file = file_object(&app, id).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["size"], bytes.len());
    assert_eq!(
        file["filename"], "report.bin",
        "cleaned as multipart names are"
    );
    app.assert_downloads(id, &sha256_hex(&bytes)).await;
    // A client that missed the last answer learns from HEAD that the upload is a file.
    let head = tus.head(&path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-offset"), bytes.len().to_string());
    assert_eq!(header(&head, "content-location"), format!("/files/{id}"));
    // And a retry of the last PATCH that sends nothing new is answered as it was.
    let retried = tus.patch(&path, bytes.len() as u64, Vec::new()).await;
    assert_eq!(retried.status(), 204);
    assert_eq!(header(&retried, "content-location"), format!("/files/{id}"));
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn creation_with_upload_and_a_length_declared_later() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = b"%PDF-1.7 the first part, and the rest".to_vec();

    let created = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Defer-Length", "1")
        .header("Content-Type", OCTETS)
        .body(bytes[..9].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "upload-offset"), "9");
    let path = header(&created, "location");
    let head = tus.head(&path).await;
    assert_eq!(header(&head, "upload-defer-length"), "1");
    assert!(head.headers().get("upload-length").is_none());

    let last = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 9)
        .header("Upload-Length", bytes.len())
        .header("Content-Type", OCTETS)
        .body(bytes[9..].to_vec())
        .send()
        .await
        .unwrap();

    assert_eq!(last.status(), 204);
    let file = file_object(&app, id_of(&path)).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["filename"], "unnamed");
    assert_eq!(
        file["content_type"], "application/pdf",
        "sniffed from the first bytes"
    );
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn protocol_errors_have_their_statuses_and_change_nothing() {
    let app = spawn_app_with(|s| s.upload.max_file_bytes = 1000).await;
    let tus = Tus::of(&app);
    let path = tus.created(10, "a.txt").await;

    let no_version = app.client.head(app.url(&path)).send().await.unwrap();
    assert_eq!(no_version.status(), 412);
    assert_eq!(header(&no_version, "tus-version"), "1.0.0");
    let old_version = app
        .client
        .patch(app.url(&path))
        .header("Tus-Resumable", "0.2.2")
        .send()
        .await
        .unwrap();
    assert_problem(old_version, 412, "tus_version_unsupported").await;
    let not_octets = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 0)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(not_octets, 415, "not_offset_octet_stream").await;
    let no_offset = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Content-Type", OCTETS)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(no_offset, 400, "invalid_request").await;
    assert_problem(tus.patch(&path, 3, "hello").await, 409, "offset_mismatch").await;
    assert_problem(
        tus.patch(&path, 0, "hello world").await,
        413,
        "length_exceeded",
    )
    .await;
    let unknown = format!("/tus/{}", Uuid::now_v7());
    assert_problem(tus.patch(&unknown, 0, "hello").await, 404, "not_found").await;
    assert_eq!(tus.head(&unknown).await.status(), 404);
    assert_problem(tus.delete(&unknown).await, 404, "not_found").await;
    assert_problem(tus.create(1001, "big").await, 413, "file_too_large").await;
    let no_length = tus
        .request(reqwest::Method::POST, "/tus/")
        .send()
        .await
        .unwrap();
    assert_problem(no_length, 400, "invalid_request").await;
    let bad_metadata = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 5)
        .header("Upload-Metadata", "filename not-base64!")
        .send()
        .await
        .unwrap();
    assert_problem(bad_metadata, 400, "invalid_request").await;
    let not_a_number = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", "-5")
        .send()
        .await
        .unwrap();
    assert_problem(not_a_number, 400, "invalid_request").await;

    assert_eq!(tus.offset(&path).await, 0, "nothing was kept");
    assert_eq!(tus.patch(&path, 0, "0123456789").await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_chunk_that_does_not_match_its_checksum_is_discarded() {
    use base64::Engine;
    use sha2::Digest;
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(600_000, 2);
    let path = tus.created(bytes.len() as u64, "checked.bin").await;
    let b64 = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    let checked = |offset: u64, chunk: &[u8], checksum: String| {
        tus.request(reqwest::Method::PATCH, &path)
            .header("Upload-Offset", offset)
            .header("Content-Type", OCTETS)
            .header("Upload-Checksum", checksum)
            .body(chunk.to_vec())
            .send()
    };
    let (first, rest) = bytes.split_at(400_000);

    let sha1 = format!("sha1 {}", b64(&sha1::Sha1::digest(first)));
    assert_eq!(checked(0, first, sha1).await.unwrap().status(), 204);
    let wrong = format!("sha256 {}", b64(&sha2::Sha256::digest(first)));
    let refused = checked(400_000, rest, wrong).await.unwrap();
    assert_problem(refused, 460, "chunk_checksum_mismatch").await;
    assert_eq!(tus.offset(&path).await, 400_000, "the chunk was discarded");
    let unknown = checked(400_000, rest, "md5 AAAA".into()).await.unwrap();
    assert_problem(unknown, 400, "invalid_request").await;
    let right = format!("sha256 {}", b64(&sha2::Sha256::digest(rest)));
    assert_eq!(checked(400_000, rest, right).await.unwrap().status(), 204);

    let file = file_object(&app, id_of(&path)).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn uploads_are_their_owners_quota_counts_and_termination_gives_it_back() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 1000;
    })
    .await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    let (tus, other) = (
        Tus::of(&app).with_token(&ada),
        Tus::of(&app).with_token(&bob),
    );
    assert_problem(Tus::of(&app).create(10, "x").await, 401, "unauthorized").await;

    let path = tus.created(600, "mine.bin").await;
    assert_eq!(tus.patch(&path, 0, vec![7u8; 100]).await.status(), 204);
    // Reserved from Upload-Length: a second upload of 600 does not fit.
    assert_problem(tus.create(600, "more").await, 413, "quota_exceeded").await;
    // Another user's upload is as absent as one that never was.
    assert_eq!(other.head(&path).await.status(), 404);
    assert_problem(
        other.patch(&path, 100, vec![1u8; 10]).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(other.delete(&path).await, 404, "not_found").await;

    let terminated = tus.delete(&path).await;
    assert_eq!(terminated.status(), 204);
    assert_eq!(tus.head(&path).await.status(), 404);
    assert_problem(tus.patch(&path, 100, vec![1u8; 10]).await, 404, "not_found").await;
    let again = tus.created(1000, "fits again").await;
    assert_eq!(tus.patch(&again, 0, vec![1u8; 1000]).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_deferred_length_counts_against_the_quota_as_bytes_arrive() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 1_000_000;
    })
    .await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let created = tus.create_deferred().await;
    let path = header(&created, "location");
    assert_eq!(tus.patch(&path, 0, vec![1u8; 900_000]).await.status(), 204);

    let over = tus.patch(&path, 900_000, vec![2u8; 200_000]).await;

    assert_problem(over, 413, "quota_exceeded").await;
    assert_eq!(tus.offset(&path).await, 900_000);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

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
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\nContent-Length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
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

/// Waits until Postgres has seen the death of the instance that holds the upload's lease:
/// taking that instance's lock (see `intake::base::liveness`) waits for its connection to end.
pub async fn wait_until_gone(app: &TestApp, path: &str) {
    let holder: Uuid =
        sqlx::query_scalar("SELECT lease_holder FROM resumable_uploads WHERE id = $1")
            .bind(id_of(path))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let key = i64::from_be_bytes(holder.as_bytes()[8..].try_into().unwrap());
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .unwrap();
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
    let _open = cut_patch_kept_open(&mut first, &path, 0, &bytes, 3 * mb + mb / 2).await;
    let recorded = first
        .wait_for(|e| {
            e["message"] == "progress recorded"
                && e["offset"].as_u64().is_some_and(|o| o >= 3 * mb as u64)
        })
        .await;
    first.child.kill().await.unwrap();
    wait_until_gone(&db, &path).await;

    let second = db
        .another_instance(|s| s.storage.kind = StorageKind::Fs)
        .await;
    let tus = Tus::of(&second);
    let offset = tus.offset(&path).await;
    assert_eq!(Some(offset), recorded["offset"].as_u64());
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

#[tokio::test]
async fn a_user_with_an_unfinished_upload_is_not_deleted_until_it_is_terminated() {
    use intake::access::auth::store::{StoreError, delete_user};
    let app = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let path = tus.created(10, "unfinished").await;

    let refused = delete_user(&app.pool, "ada").await;

    assert!(
        matches!(refused, Err(StoreError::UserOwnsFiles(_, 1))),
        "{refused:?}"
    );
    assert_eq!(tus.delete(&path).await.status(), 204);
    delete_user(&app.pool, "ada").await.unwrap();
}

#[tokio::test]
async fn a_creation_whose_first_bytes_fail_still_says_where_the_upload_is() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);

    let refused = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 10)
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body("0123456789")
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), 460);
    assert_eq!(
        header(&refused, "tus-resumable"),
        "1.0.0",
        "errors carry it too"
    );
    let path = header(&refused, "location");
    assert_eq!(tus.offset(&path).await, 0);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
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

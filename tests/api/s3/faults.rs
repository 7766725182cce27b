//! The bucket under faults: taken away while uploads and deletes need it, then given back
//! (nothing that had to be cleaned up is forgotten, however many sweeps fail in between); a
//! bucket that hangs (answered within bounds), that answers slowly (a long download finishes),
//! or that cuts its answers (a download ends as an error, never as a short body).

use std::time::Duration;

use futures_util::StreamExt;
use intake::{
    base::configuration::{Settings, StorageKind},
    storage::Storage,
};

use super::server::{MIB, S3Server, SECRET, app_on, app_via, pairs, sweeping_instance};
use crate::child::ChildServer;
use crate::helpers::{
    GENEROUS_TIMEOUT_MS, NOT_INLINE, TestApp, assert_problem, random_bytes, sha256_hex,
    test_settings, use_bucket,
};
use crate::proxy::{FaultyProxy, Mode};

async fn upload(server: &ChildServer, seed: u64) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(random_bytes(NOT_INLINE, seed)).file_name("f.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = reqwest::Client::new().post(server.url("/upload"));
    request.multipart(form).send().await.unwrap()
}

#[tokio::test]
async fn every_cleanup_that_failed_while_the_bucket_was_away_is_done_once_it_is_back() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut intake) = sweeping_instance(&bucket, "away/", None).await;
    let stored = upload(&intake, 1).await;
    assert_eq!(stored.status(), 201);
    let id = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bucket.objects("away/").len(), 1);

    bucket.stop().await;
    // Two objects to remove that the bucket refuses: a refused upload's, a deleted file's.
    assert_problem(upload(&intake, 2).await, 503, "storage_unavailable").await;
    let failed = "could not remove an object from the bucket; the sweep will";
    intake.wait_for_log(failed).await;
    let deleted = reqwest::Client::new().delete(intake.url(&format!("/files/{id}")));
    assert_eq!(deleted.send().await.unwrap().status(), 204);
    intake.wait_for_log(failed).await;
    // Sweeps that fail while it is away lose neither.
    for _ in 0..2 {
        intake
            .wait_for_log("storage sweep failed; will retry")
            .await;
    }
    assert_eq!(db.leftovers().await.len(), 2);

    bucket.restart().await;
    let repaired = intake.wait_for(|event| {
        event["message"] == "storage sweep repaired leftovers" && event["removed"] == 2
    });
    tokio::time::timeout(
        std::time::Duration::from_millis(GENEROUS_TIMEOUT_MS),
        repaired,
    )
    .await
    .expect("one sweep removes both");
    assert!(db.leftovers().await.is_empty());
    assert_eq!(bucket.objects("away/"), Vec::<std::path::PathBuf>::new());
    assert!(db.row_ids().await.is_empty());
}

#[tokio::test]
async fn a_cleanup_left_by_an_instance_killed_while_the_bucket_was_away_is_done_by_the_next() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let db = app_on(&bucket, |_| {}).await;
    let root = tempfile::tempdir().unwrap();
    let env = bucket.env("killed/");
    let mut first = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
    bucket.stop().await;
    assert_problem(upload(&first, 3).await, 503, "storage_unavailable").await;
    first
        .wait_for_log("could not remove an object from the bucket; the sweep will")
        .await;
    first.child.kill().await.unwrap();

    bucket.restart().await;
    // The next instance's start-up sweep settles what the gone one left, before it listens.
    let _next = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
    assert!(db.leftovers().await.is_empty());
    assert_eq!(bucket.objects("killed/"), Vec::<std::path::PathBuf>::new());
}

/// The answer, or a failure of the test if it takes longer than any bound the server promises
/// (rather than a test that hangs as long as the server does).
async fn bounded<T>(answer: impl std::future::Future<Output = T>) -> T {
    let limit = Duration::from_millis(GENEROUS_TIMEOUT_MS);
    tokio::time::timeout(limit, answer)
        .await
        .expect("answered within its bound")
}

async fn behind_a_proxy(
    customize: impl FnOnce(&mut intake::base::configuration::Settings),
) -> Option<(S3Server, FaultyProxy, TestApp)> {
    let bucket = S3Server::start().await?;
    let proxy = FaultyProxy::start(bucket.port).await;
    let app = app_via(&bucket, proxy.port, customize).await;
    Some((bucket, proxy, app))
}

#[tokio::test]
async fn a_bucket_that_hangs_gets_readiness_and_uploads_a_503_within_their_bounds() {
    let Some((_bucket, proxy, app)) = behind_a_proxy(|s| {
        s.health.timeout_ms = 500;
        s.storage.s3.read_timeout_secs = 1;
    })
    .await
    else {
        return;
    };
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let stored = app
        .upload_file("kept.bin", random_bytes(NOT_INLINE, 3), None)
        .await;
    let id = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    proxy.set(Mode::Hang);
    let ready = bounded(app.get("/health/ready")).await;
    assert_problem(ready, 503, "storage_unavailable").await;
    let upload = bounded(app.upload_file("hung.bin", random_bytes(NOT_INLINE, 4), None)).await;
    assert_problem(upload, 503, "storage_unavailable").await;
    let download = bounded(app.get(&format!("/files/{id}/content"))).await;
    assert_problem(download, 503, "storage_unavailable").await;

    proxy.set(Mode::Forward);
    assert_eq!(app.get("/health/ready").await.status(), 200);
}

#[tokio::test]
async fn a_download_that_takes_longer_than_any_request_may_gets_every_byte() {
    // Every request but a download may take 1 s in all; this one takes about 4.
    let Some((_bucket, proxy, app)) = behind_a_proxy(|s| {
        s.storage.s3.request_timeout_secs = 1;
        s.storage.s3.read_timeout_secs = 5;
    })
    .await
    else {
        return;
    };
    let bytes = random_bytes(4 * MIB, 5);
    let stored = app.upload_file("long.bin", bytes.clone(), None).await;
    assert_eq!(stored.status(), 201);
    let id = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    proxy.set(Mode::Slow { bytes_per_sec: MIB });
    let download = app.get(&format!("/files/{id}/content")).await;
    assert_eq!(download.status(), 200);
    let body = bounded(download.bytes()).await.expect("every byte arrives");
    assert_eq!(body.len(), bytes.len());
    assert_eq!(sha256_hex(&body), sha256_hex(&bytes));
}

/// A phone on a train: the client takes a few bytes, then reads nothing for longer than the
/// bucket may be silent (every buffer between is full, so intake does not ask the bucket for
/// more), again and again. Only the bucket's own silence counts, while a read waits for it.
/// (The HTTP client's read timeout ran from the last bytes received, asked for or not: each
/// pause failed the body, object_store asked again for the rest while its retries lasted, and
/// then the download ended; a curl reading at 200 KB/s lost its download after about 50 s.)
#[tokio::test]
async fn a_download_read_with_pauses_longer_than_the_bucket_may_be_silent_gets_every_byte() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let prefix = format!("paused-{}/", uuid::Uuid::now_v7().simple());
    let configure = |s: &mut Settings| {
        s.storage.s3.prefix = prefix.clone();
        s.storage.s3.read_timeout_secs = 1;
    };
    let app = app_on(&bucket, configure).await;
    let bytes = random_bytes(4 * MIB, 6);
    let stored = app.upload_file("paused.bin", bytes.clone(), None).await;
    let id: uuid::Uuid = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The storage layer itself, so that nothing between (socket buffers) reads ahead for the
    // paused reader.
    let mut settings = test_settings();
    settings.storage.kind = StorageKind::S3;
    use_bucket(&mut settings.storage.s3, &bucket.url(SECRET));
    configure(&mut settings);
    let liveness = app.db_url().parse().unwrap();
    let storage = Storage::open(&settings.storage, &app.pool, liveness)
        .await
        .unwrap();

    let mut body = storage.read(id, 0, bytes.len() as u64).await.unwrap();
    let mut received = Vec::new();
    // More pauses than the bucket client retries a failed body, each twice the allowed silence:
    // the pause is what is under test, not a wait for something to happen.
    for _ in 0..4 {
        let chunk = bounded(body.next()).await.expect("more to come");
        received.extend_from_slice(&chunk.expect("a chunk after a pause"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    while let Some(chunk) = bounded(body.next()).await {
        received.extend_from_slice(&chunk.expect("the rest"));
    }
    assert_eq!(sha256_hex(&received), sha256_hex(&bytes));
}

#[tokio::test]
async fn a_download_the_bucket_cuts_ends_as_an_error_never_as_a_short_body() {
    let Some((_bucket, proxy, app)) = behind_a_proxy(|_| {}).await else {
        return;
    };
    let bytes = random_bytes(4 * MIB, 6);
    let stored = app.upload_file("cut.bin", bytes.clone(), None).await;
    let id = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every connection to the bucket is cut after 1 MiB of answer, retries included.
    proxy.set(Mode::Cut { after: MIB });
    let download = app.get(&format!("/files/{id}/content")).await;
    let body = bounded(async {
        match download.status().as_u16() {
            200 => download.bytes().await.map(|body| body.to_vec()),
            status => panic!("{status}"),
        }
    })
    .await;

    // Either the whole file (the client got the rest on a retry) or an error: a body short of
    // its Content-Length that the client would take for the file is the one wrong answer.
    match body {
        Ok(body) => assert_eq!(sha256_hex(&body), sha256_hex(&bytes)),
        Err(error) => assert!(error.is_body() || error.is_decode(), "{error:?}"),
    }
}

#[tokio::test]
async fn a_completion_whose_answer_is_lost_still_stores_the_file() {
    let Some((bucket, proxy, app)) = behind_a_proxy(|_| {}).await else {
        return;
    };
    // Three parts of 5 MiB: a multipart upload, completed at the end.
    let bytes = random_bytes(12 * MIB, 7);

    proxy.set(Mode::LoseCompletion);
    let stored = bounded(app.upload_file("lost.bin", bytes.clone(), None)).await;

    assert_eq!(stored.status(), 201);
    let id = stored.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        proxy.mode(),
        Mode::Forward,
        "no completion went through the proxy"
    );
    let download = app.get(&format!("/files/{id}/content")).await;
    assert_eq!(
        sha256_hex(&download.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );
    assert!(app.leftovers().await.is_empty());
    assert_eq!(bucket.unfinished_parts(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn a_probe_object_whose_delete_failed_is_removed_by_a_later_sweep() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let (_db, _root, mut intake) = sweeping_instance(&bucket, "probed/", Some(proxy.port)).await;

    proxy.set(Mode::RefuseDeletes);
    let ready = reqwest::get(intake.url("/health/ready")).await.unwrap();
    assert_problem(ready, 503, "storage_unavailable").await;
    let probes = bucket.objects("probed/probes");
    assert_eq!(probes.len(), 1, "the probe's object stayed");
    // A minute old: no probe under way is.
    let file = std::fs::File::options()
        .write(true)
        .open(&probes[0])
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
        .unwrap();

    proxy.set(Mode::Forward);
    let swept = intake.wait_for(|event| {
        event["message"] == "storage sweep repaired leftovers" && event["removed"] == 1
    });
    bounded(swept).await;
    assert_eq!(
        bucket.objects("probed/probes"),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn a_tus_patch_the_bucket_goes_away_under_resumes_once_it_is_back() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let app = app_on(&bucket, |_| {}).await;
    let tus = crate::tus::Tus::of(&app);
    let bytes = random_bytes(12 * MIB, 8);
    let path = tus.created(bytes.len() as u64, "away.bin").await;

    // More than a part goes, then the bucket goes, then the rest of the body comes.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    let body = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let patch = {
        let tus = crate::tus::Tus::of(&app);
        let path = path.clone();
        tokio::spawn(async move { tus.patch(&path, 0, reqwest::Body::wrap_stream(body)).await })
    };
    for chunk in bytes[..6 * MIB].chunks(MIB) {
        sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    bucket.stop().await;
    for chunk in bytes[6 * MIB..].chunks(MIB) {
        if sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(sender);
    let answered = bounded(patch).await.unwrap();
    assert_problem(answered, 503, "storage_unavailable").await;

    bucket.restart().await;
    let offset = tus.offset(&path).await;
    let finished = tus
        .patch(&path, offset, bytes[offset as usize..].to_vec())
        .await;
    assert_eq!(finished.status(), 204);
    let id = crate::tus::id_of(&path);
    let download = app.get(&format!("/files/{id}/content")).await;
    assert_eq!(
        sha256_hex(&download.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );
    crate::tus::assert_nothing_resumable_left(&app).await;
    assert_eq!(bucket.unfinished_parts(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn a_resumable_upload_terminated_while_the_bucket_is_away_leaves_no_part_once_it_is_back() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut intake) = sweeping_instance(&bucket, "terminated/", None).await;
    let tus = crate::tus::Tus::new(&format!("http://{}", intake.address));
    let path = tus.created(12 * MIB as u64, "terminated.bin").await;
    // A part of 5 MiB goes to the bucket; the rest waits in the row.
    let patched = tus.patch(&path, 0, random_bytes(6 * MIB, 11)).await;
    assert_eq!(patched.status(), 204);
    assert_eq!(bucket.unfinished_parts().len(), 1);

    bucket.stop().await;
    assert_eq!(tus.delete(&path).await.status(), 204);
    let failed = intake.wait_for_log("could not remove an object from the bucket; the sweep will");
    bounded(failed).await;

    bucket.restart().await;
    let swept = intake.wait_for(|event| {
        event["message"] == "storage sweep repaired leftovers" && event["removed"] == 1
    });
    bounded(swept).await;
    assert_eq!(bucket.unfinished_parts(), Vec::<std::path::PathBuf>::new());
    assert!(db.leftovers().await.is_empty());
}

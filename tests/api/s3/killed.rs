//! Two instances on one bucket, one killed -9 in the middle of each fault (the bucket away
//! during an upload, a delete or a tus PATCH; a bucket that hangs; a slow download): the other
//! settles what it left within its sweep interval (1 s here), or the client carries on there,
//! and nothing is left: rows = objects, no intent, no multipart upload, no probe object.

use std::collections::BTreeSet;

use super::server::{MIB, S3Server, pairs, sweeping_instance, swept_one};
use crate::{
    child::{ChildServer, RawUpload},
    helpers::{TestApp, random_bytes, sha256_hex, stored_ids},
    proxy::{FaultyProxy, Mode},
    tus::{Tus, id_of},
};

/// Two instances sweeping every second on the bucket's `prefix`: A, reached through `via` (a
/// proxy's port) when given, and B, on the bucket itself.
async fn two(
    bucket: &S3Server,
    prefix: &str,
    via: Option<u16>,
) -> (TestApp, tempfile::TempDir, ChildServer, ChildServer) {
    let (db, root, a) = sweeping_instance(bucket, prefix, via).await;
    let mut env = bucket.env(prefix);
    env.push(("APP__STORAGE__SWEEP_INTERVAL_SECS".into(), "1".into()));
    let b = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
    (db, root, a, b)
}

/// Uploads `bytes` to `instance`: the stored file's id.
async fn stored(instance: &ChildServer, bytes: Vec<u8>) -> String {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("stored.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = reqwest::Client::new().post(instance.url("/upload"));
    let stored = request.multipart(form).send().await.unwrap();
    assert_eq!(stored.status(), 201);
    let file: serde_json::Value = stored.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

async fn kill(instance: &mut ChildServer) {
    instance.signal("KILL");
    instance.child.wait().await.unwrap();
}

/// Nothing left behind: every object under `prefix` is a row's (so no probe object either), no
/// intent, no unfinished multipart upload.
async fn assert_settled(db: &TestApp, bucket: &S3Server, prefix: &str) {
    let objects: BTreeSet<uuid::Uuid> = bucket
        .objects(prefix)
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.parse()
                .unwrap_or_else(|_| panic!("not a file's object: {path:?}"))
        })
        .collect();
    assert_eq!(objects, stored_ids(&db.pool).await);
    assert!(db.leftovers().await.is_empty(), "no intent is left");
    assert_eq!(bucket.unfinished_parts(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn an_instance_killed_mid_upload_while_the_bucket_is_away_is_settled_by_the_other() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut a, mut b) = two(&bucket, "killed-upload/", None).await;
    let _upload = RawUpload::start(&a.address, 20 * MIB, 12 * MIB).await;
    a.wait_for_log("multipart upload started").await;
    bucket.stop().await;
    kill(&mut a).await;

    bucket.restart().await;
    swept_one(&mut b).await;
    assert_settled(&db, &bucket, "killed-upload/").await;
}

#[tokio::test]
async fn an_instance_killed_after_a_delete_the_bucket_refused_is_settled_by_the_other() {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut a, mut b) = two(&bucket, "killed-delete/", None).await;
    let id = stored(&a, random_bytes(MIB, 31)).await;
    let client = reqwest::Client::new();

    bucket.stop().await;
    let deleted = client
        .delete(a.url(&format!("/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    a.wait_for_log("could not remove an object from the bucket; the sweep will")
        .await;
    kill(&mut a).await;

    bucket.restart().await;
    swept_one(&mut b).await;
    assert_settled(&db, &bucket, "killed-delete/").await;
    assert!(stored_ids(&db.pool).await.is_empty());
}

#[tokio::test]
async fn a_tus_upload_whose_instance_was_killed_mid_patch_while_the_bucket_was_away_finishes_on_the_other()
 {
    let Some(mut bucket) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut a, b) = two(&bucket, "killed-tus/", None).await;
    let (on_a, on_b) = (
        Tus::new(&format!("http://{}", a.address)),
        Tus::new(&format!("http://{}", b.address)),
    );
    let bytes = random_bytes(17 * MIB, 32);
    let path = on_a.created(bytes.len() as u64, "killed.bin").await;
    // One PATCH records a part and a tail; the next is under way when the bucket goes and A
    // is killed.
    let first = on_a.patch(&path, 0, bytes[..7 * MIB].to_vec()).await;
    assert_eq!(first.status(), 204);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    let body = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let patch = {
        let (on_a, path) = (Tus::new(&format!("http://{}", a.address)), path.clone());
        tokio::spawn(async move {
            on_a.patch(&path, 7 * MIB as u64, reqwest::Body::wrap_stream(body))
                .await
        })
    };
    for chunk in bytes[7 * MIB..12 * MIB].chunks(MIB) {
        sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    bucket.stop().await;
    kill(&mut a).await;
    drop(sender);
    let _ = patch.await;

    bucket.restart().await;
    let offset = on_b.offset(&path).await as usize;
    assert!(offset >= 7 * MIB, "what was recorded stays: {offset}");
    let finished = on_b
        .patch(&path, offset as u64, bytes[offset..].to_vec())
        .await;
    assert_eq!(finished.status(), 204, "{:?}", finished.text().await);
    let download = reqwest::get(b.url(&format!("/files/{}/content", id_of(&path))))
        .await
        .unwrap();
    assert_eq!(
        sha256_hex(&download.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );
    assert_settled(&db, &bucket, "killed-tus/").await;
}

#[tokio::test]
async fn an_instance_killed_while_its_bucket_hangs_is_settled_by_the_other() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let (db, _root, mut a, mut b) = two(&bucket, "killed-hang/", Some(proxy.port)).await;
    let _upload = RawUpload::start(&a.address, 20 * MIB, 12 * MIB).await;
    a.wait_for_log("multipart upload started").await;
    proxy.set(Mode::Hang);
    kill(&mut a).await;

    proxy.set(Mode::Forward);
    swept_one(&mut b).await;
    assert_settled(&db, &bucket, "killed-hang/").await;
}

#[tokio::test]
async fn a_slow_download_whose_instance_is_killed_ends_as_an_error_and_resumes_on_the_other() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let (db, _root, mut a, b) = two(&bucket, "killed-read/", Some(proxy.port)).await;
    let bytes = random_bytes(6 * MIB, 33);
    let id = stored(&a, bytes.clone()).await;
    let client = reqwest::Client::new();

    proxy.set(Mode::Slow {
        bytes_per_sec: 256 * 1024,
    });
    let mut download = client
        .get(a.url(&format!("/files/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut received = download
        .chunk()
        .await
        .unwrap()
        .expect("a first chunk")
        .to_vec();
    kill(&mut a).await;
    let ended = loop {
        match download.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    assert!(
        ended.is_err(),
        "a cut download is never a complete-looking body"
    );
    assert!(received.len() < bytes.len());

    let rest = client
        .get(b.url(&format!("/files/{id}/content")))
        .header("Range", format!("bytes={}-", received.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 206);
    received.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(sha256_hex(&received), sha256_hex(&bytes));
    assert_settled(&db, &bucket, "killed-read/").await;
}

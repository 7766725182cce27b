//! The S3 backend's own promises, each test against an S3 server of its own: s3s-fs from the
//! Rust registry (it checks request signatures; `.ci/run` installs it). Aborted multipart
//! uploads, a killed instance's upload settled by another instance, credentials, readiness,
//! concatenation (`concat`).
//! (The rest of the suite runs against a bucket too: `INTAKE_TEST_S3`, see `.ci/run`.) The
//! bucket under faults: `faults`.

mod concat;
mod faults;
mod killed;
mod parts;
mod server;

use std::path::PathBuf;

use intake::{
    base::{configuration::StorageKind, telemetry::cause_chain},
    startup::Application,
};
use tokio::process::Command;

use self::server::{BUCKET, MIB, S3Server, SECRET, app_on, pairs, swept_one};
use crate::{
    child::{ChildServer, RawUpload},
    helpers::{
        NOT_INLINE, TestBucket, assert_problem, random_bytes, sha256_hex, test_settings, use_bucket,
    },
};

#[tokio::test]
async fn a_multipart_upload_over_the_limit_is_aborted_and_keeps_nothing() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&server, |s| s.upload.max_file_bytes = 12 * MIB as u64).await;

    let response = app
        .upload_file("big.bin", random_bytes(16 * MIB, 31), None)
        .await;

    assert_problem(response, 413, "file_too_large").await;
    assert!(app.assert_consistent().await.is_empty());
    assert_eq!(server.unfinished_parts(), Vec::<PathBuf>::new());
    let ok = app
        .upload_file("fits.bin", random_bytes(11 * MIB, 32), None)
        .await;
    assert_eq!(ok.status(), 201);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_multipart_leaves_no_parts() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&server, |_| {}).await;
    let upload = RawUpload::start(app.host(), 20 * MIB, 12 * MIB).await;
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == 1).await.unwrap();

    drop(upload);

    assert!(app.assert_consistent().await.is_empty());
    assert_eq!(server.unfinished_parts(), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn two_instances_share_the_bucket_and_one_settles_what_a_killed_one_left() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let db = app_on(&server, |_| {}).await;
    let root = tempfile::tempdir().unwrap();
    let prefix = format!("two-{}/", uuid::Uuid::now_v7().simple());
    let env = server.env(&prefix);
    let mut env_b = env.clone();
    env_b.push(("APP__STORAGE__SWEEP_INTERVAL_SECS".into(), "1".into()));
    let mut a = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
    let mut b = ChildServer::start(&db.db_url(), root.path(), &pairs(&env_b)).await;
    let client = reqwest::Client::new();

    // Uploads through one, downloads and deletes through the other, at once.
    let files: Vec<Vec<u8>> = (0..12)
        .map(|seed| random_bytes(MIB / 2 + seed * 1000, seed as u64))
        .collect();
    let uploads = files.iter().enumerate().map(|(i, bytes)| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(format!("f{i}.bin")),
        );
        client.post(a.url("/upload")).multipart(form).send()
    });
    let mut ids = Vec::new();
    for (response, bytes) in futures_util::future::join_all(uploads)
        .await
        .into_iter()
        .zip(&files)
    {
        let body: serde_json::Value = response.unwrap().json().await.unwrap();
        assert_eq!(body["sha256"], sha256_hex(bytes));
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let reads = ids
        .iter()
        .map(|id| client.get(b.url(&format!("/files/{id}/content"))).send());
    let deletes = ids[..6]
        .iter()
        .map(|id| client.delete(b.url(&format!("/files/{id}"))).send());
    let (reads, deletes) = futures_util::future::join(
        futures_util::future::join_all(reads),
        futures_util::future::join_all(deletes),
    )
    .await;
    for (response, (i, bytes)) in reads.into_iter().zip(files.iter().enumerate()) {
        let response = response.unwrap();
        // A read may lose the race with its delete: then it is a clean 404.
        match response.status().as_u16() {
            200 => assert_eq!(
                sha256_hex(&response.bytes().await.unwrap()),
                sha256_hex(bytes)
            ),
            404 if i < 6 => {}
            status => panic!("file {i}: {status}"),
        }
    }
    assert!(deletes.into_iter().all(|r| r.unwrap().status() == 204));

    // A killed mid-way through a multipart upload: B's sweep aborts it.
    let _upload = RawUpload::start(&a.address, 20 * MIB, 12 * MIB).await;
    a.wait_for_log("multipart upload started").await;
    a.signal("KILL");
    a.child.wait().await.unwrap();
    let swept = swept_one(&mut b).await;
    assert_eq!(swept["kept"], 0);

    let mut settings = test_settings();
    use_bucket(&mut settings.storage.s3, &server.url(SECRET));
    settings.storage.s3.prefix = prefix;
    let bucket = TestBucket::new(&settings.storage.s3);
    assert_eq!(db.row_ids().await, bucket.object_ids().await);
    assert_eq!(db.row_ids().await.len(), 6);
    assert!(db.leftovers().await.is_empty(), "no intent is left");
    assert_eq!(server.unfinished_parts(), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn wrong_credentials_stop_the_start_up_with_the_bucket_named() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let db = app_on(&server, |_| {}).await;
    let mut settings = test_settings();
    settings.database.url = db.db_url().into();
    settings.server.port = 0;
    settings.storage.kind = StorageKind::S3;
    use_bucket(&mut settings.storage.s3, &server.url("not-the-secret"));

    let failure = match Application::build(settings).await {
        Ok(_) => panic!("started with wrong credentials"),
        Err(error) => cause_chain(&error),
    };

    assert!(
        failure.contains(&format!(
            "could not reach bucket `{BUCKET}` at http://127.0.0.1:{}",
            server.port
        )),
        "{failure}"
    );
    assert!(failure.contains("403"), "{failure}");
    assert!(
        !failure.contains(SECRET) && !failure.contains("not-the-secret"),
        "{failure}"
    );
}

#[tokio::test]
async fn readiness_follows_the_bucket() {
    let Some(mut server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&server, |_| {}).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);

    server.stop().await;
    let ready = app.get("/health/ready").await;
    let upload = app
        .upload_file("during.bin", random_bytes(NOT_INLINE, 2), None)
        .await;
    // A small file is kept in Postgres: the bucket is not needed.
    let small = app.upload_file("small.txt", b"during".to_vec(), None).await;
    assert_problem(ready, 503, "storage_unavailable").await;
    assert_problem(upload, 503, "storage_unavailable").await;
    assert_eq!(small.status(), 201);

    server.restart().await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    // (The refused upload's intent waits for this instance's next sweep.)
    assert!(app.object_ids().await.is_empty());
    assert_eq!(app.row_ids().await.len(), 1);
}

/// Every test whose promise holds on both backends, run again with a bucket: the same binary,
/// with `INTAKE_TEST_S3` pointing at an s3s-fs of its own. (One `cargo test` covers both.)
#[tokio::test]
async fn the_suite_passes_against_a_bucket_too() {
    if std::env::var_os("INTAKE_TEST_S3").is_some() {
        return;
    }
    let Some(server) = S3Server::start().await else {
        return;
    };
    let ran = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .env("INTAKE_TEST_S3", server.url(SECRET).as_str())
        .env("INTAKE_TEST_S3_RAN", ran.path())
        // The filesystem backend's own tests, those that start their own processes or servers
        // whatever the backend, and this module.
        .args([
            "--skip",
            "s3::",
            "--skip",
            "crash::",
            "--skip",
            "disk_full::",
        ])
        .args([
            "--skip",
            "startup::",
            "--skip",
            "container::",
            "--skip",
            "readme::",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .filter(|line| line.starts_with("test result") || line.contains("FAILED"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        output.status.success(),
        "{summary}\n\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Only the tests that stored into the bucket count: one that returned early, or that runs
    // no server, passes without proving anything about a bucket (161 of 168 store into it).
    let on_bucket = std::fs::read_dir(ran.path()).unwrap().count();
    assert!(
        on_bucket >= 155,
        "only {on_bucket} tests stored into the bucket: {summary}"
    );
    eprintln!("against a bucket: {on_bucket} tests stored into it; {summary}");
}

#[tokio::test]
async fn what_the_bucket_refused_to_remove_is_removed_by_the_next_sweep() {
    let Some(mut server) = S3Server::start().await else {
        return;
    };
    let (db, _root, mut intake) = server::sweeping_instance(&server, "deferred/", None).await;

    server.stop().await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(random_bytes(NOT_INLINE, 3)).file_name("r.bin"),
    );
    let refused = reqwest::Client::new()
        .post(intake.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 503, "storage_unavailable").await;
    // Its intent was recorded before the PUT; removing the object failed too.
    intake
        .wait_for_log("could not remove an object from the bucket; the sweep will")
        .await;
    assert_eq!(db.leftovers().await.len(), 1);

    server.restart().await;
    let swept = swept_one(&mut intake).await;
    assert_eq!(swept["kept"], 0);
    assert!(db.leftovers().await.is_empty());
}

#[tokio::test]
async fn a_resumable_upload_keeps_its_tail_in_its_row_until_it_fills_a_part() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    // Parts of 8 MiB, chunks of 3 MiB: tails of 3 and 6 MiB stay in the row (a part of 6 MiB
    // would be shorter than the others); at 9 MiB one part goes and 1 MiB stays.
    let app = app_on(&server, |s| s.storage.s3.part_size_bytes = 8 * MIB).await;
    let tus = crate::tus::Tus::of(&app);
    let bytes = random_bytes(20 * MIB + 7, 33);
    let path = tus.created(bytes.len() as u64, "tails.bin").await;
    let tail_and_parts = || async {
        sqlx::query_as::<_, (i32, i32)>(
            "SELECT length(tail), cardinality(parts) FROM resumable_uploads",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };

    let mut offset = 0;
    for (chunk, expected) in [(3, (3 * MIB, 0)), (3, (6 * MIB, 0)), (3, (MIB, 1))] {
        let end = offset + chunk * MIB;
        let patched = tus
            .patch(&path, offset as u64, bytes[offset..end].to_vec())
            .await;
        assert_eq!(patched.status(), 204);
        let (tail, parts) = tail_and_parts().await;
        assert_eq!(
            (tail as usize, parts),
            (expected.0, expected.1),
            "after {end} bytes"
        );
        offset = end;
    }
    let last = tus
        .patch(&path, offset as u64, bytes[offset..].to_vec())
        .await;

    assert_eq!(last.status(), 204);
    let id = path.trim_start_matches("/tus/");
    let stored: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(stored["sha256"], sha256_hex(&bytes));
    crate::tus::assert_nothing_resumable_left(&app).await;
    assert_eq!(server.unfinished_parts(), Vec::<PathBuf>::new());
}

//! The bucket under faults: taken away while uploads and deletes need it, then given back.
//! Nothing that had to be cleaned up is forgotten, however many sweeps fail in between.

use super::server::{S3Server, app_on, pairs};
use crate::{
    child::ChildServer,
    helpers::{GENEROUS_TIMEOUT_MS, NOT_INLINE, assert_problem, random_bytes},
};

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
    let db = app_on(&bucket, |_| {}).await;
    let root = tempfile::tempdir().unwrap();
    let mut env = bucket.env("away/");
    env.push(("APP__STORAGE__SWEEP_INTERVAL_SECS".into(), "1".into()));
    let mut intake = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
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

//! The group commit's fallbacks (`catalog::committer`): uploads committed in one statement, one
//! of which cannot be stored, and the others still are. The jobs are all queued before a
//! committer runs (the test's runtime has one thread, and each insert queues its job when first
//! polled), so the committer takes them as one group.

use std::{future::Future, task::Poll};

use futures_util::future::join_all;
use intake::{
    access::auth::store,
    catalog::{
        committer::Committer,
        record::{FileRecord, NewFile, Origin},
    },
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{TestApp, random_bytes, spawn_app};

fn new_file(id: Uuid, seed: u64) -> NewFile {
    let bytes = random_bytes(1000, seed);
    NewFile {
        id,
        filename: format!("{seed}.bin"),
        content_type: "application/octet-stream".into(),
        size: bytes.len() as i64,
        sha256: Sha256::digest(&bytes).into(),
        inline: Some(bytes),
        // Every other file with a lifetime: the group commit writes both kinds.
        lifetime: seed.is_multiple_of(2).then_some(3_600 + seed as i64),
        upload_link: None,
        metadata: None,
        origin: Origin::here("multipart"),
    }
}

type Outcome = Result<Option<Vec<FileRecord>>, sqlx::Error>;

/// Commits one upload per `(owner, file)` through one committer, every job queued before any is
/// committed.
async fn commit_together(app: &TestApp, uploads: Vec<(i64, NewFile)>) -> Vec<Outcome> {
    let unclaimed = uploads
        .into_iter()
        .map(|(owner, file)| (owner, file, false));
    commit_claiming(app, unclaimed.collect()).await
}

/// As `commit_together`, each upload marked `true` claiming its file's storage intent (its
/// object in a bucket).
async fn commit_claiming(app: &TestApp, uploads: Vec<(i64, NewFile, bool)>) -> Vec<Outcome> {
    let committer = Committer::start(app.pool.clone());
    let mut pending: Vec<_> = uploads
        .into_iter()
        .map(|(owner, file, claims)| {
            let claims = claims.then_some(file.id).into_iter().collect();
            Box::pin(committer.insert_all(owner, Uuid::now_v7(), vec![file], claims))
        })
        .collect();
    for insert in &mut pending {
        let first = std::future::poll_fn(|cx| Poll::Ready(insert.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "queued, not committed");
    }
    join_all(pending).await
}

#[tokio::test]
async fn an_upload_whose_owner_was_deleted_is_skipped_alone() {
    let app = spawn_app().await;
    let alice = store::create_user(&app.pool, "alice", None).await.unwrap();
    let gone = store::create_user(&app.pool, "gone", None).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(gone)
        .execute(&app.pool)
        .await
        .unwrap();
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let owners = [alice, gone, alice];
    let uploads = owners
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(seed, (&owner, &id))| (owner, new_file(id, seed as u64)))
        .collect();

    let outcomes = commit_together(&app, uploads).await;

    let stored: Vec<FileRecord> = [&outcomes[0], &outcomes[2]]
        .into_iter()
        .map(|outcome| outcome.as_ref().unwrap().as_ref().unwrap()[0].clone())
        .collect();
    assert!(matches!(outcomes[1], Ok(None)), "{:?}", outcomes[1]);
    // One statement stored both: one transaction, one `now()`.
    assert_eq!(stored[0].created_at, stored[1].created_at);
    // Each lifetime as asked, from the commit's time: the records say what the rows hold.
    for (record, seconds) in stored.iter().zip([3_600, 3_602]) {
        let expires_at: Option<time::OffsetDateTime> =
            sqlx::query_scalar("SELECT expires_at FROM files WHERE id = $1")
                .bind(record.id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(expires_at, record.expires_at);
        assert_eq!(
            expires_at,
            Some(record.created_at + time::Duration::seconds(seconds))
        );
    }
    assert_eq!(app.row_ids().await, [ids[0], ids[2]].into_iter().collect());
    let gone_changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_changes WHERE user_id = $1")
            .bind(gone)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(gone_changes, 0, "nothing counted for the deleted owner");
    assert_eq!(app.usage("alice").await, (2000, 0, 0));
    app.assert_consistent().await;
}

#[tokio::test]
async fn a_refused_group_is_retried_one_by_one_so_that_one_cannot_fail_the_others() {
    let app = spawn_app().await;
    let owner = store::create_user(&app.pool, "alice", None).await.unwrap();
    // A file whose id the second upload reuses: Postgres refuses the statement that holds it.
    let taken = Uuid::now_v7();
    let first = commit_together(&app, vec![(owner, new_file(taken, 9))]).await;
    assert!(matches!(first[0], Ok(Some(_))), "{:?}", first[0]);
    let ids = [Uuid::now_v7(), taken, Uuid::now_v7()];
    let uploads = ids
        .iter()
        .enumerate()
        .map(|(seed, &id)| (owner, new_file(id, seed as u64)))
        .collect();

    let outcomes = commit_together(&app, uploads).await;

    assert!(matches!(outcomes[0], Ok(Some(_))), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], Err(sqlx::Error::Database(e)) if e.is_unique_violation()),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(outcomes[2], Ok(Some(_))), "{:?}", outcomes[2]);
    assert_eq!(
        app.row_ids().await,
        [taken, ids[0], ids[2]].into_iter().collect()
    );
    // The first file, and the two of the group that could be stored; the refused one's bytes
    // were never counted.
    assert_eq!(app.usage("alice").await, (3000, 0, 0));
    let kept: String = sqlx::query_scalar("SELECT filename FROM files WHERE id = $1")
        .bind(taken)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, "9.bin");
    app.assert_consistent().await;
}

/// Uploads into a bucket are committed together too, each claiming its object's storage intent
/// in the same statement; one whose intent a storage sweep has settled (its object removed)
/// fails alone, and the others are stored with their intents claimed.
#[tokio::test]
async fn uploads_claiming_storage_intents_are_committed_together_and_a_swept_one_fails_alone() {
    let app = spawn_app().await;
    let owner = store::create_user(&app.pool, "alice", None).await.unwrap();
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    // Every object has its intent but the fifth's, which a sweep has settled.
    for &id in ids.iter().filter(|&&id| id != ids[4]) {
        sqlx::query("INSERT INTO storage_intents (object_id, instance) VALUES ($1, $2)")
            .bind(id)
            .bind(Uuid::now_v7())
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let upload = |seed: usize| (owner, new_file(ids[seed], seed as u64), true);

    let together = commit_claiming(&app, (0..3).map(upload).collect()).await;
    let stored: Vec<FileRecord> = together
        .iter()
        .map(|outcome| outcome.as_ref().unwrap().as_ref().unwrap()[0].clone())
        .collect();
    // One statement stored all three: one transaction, one `now()`.
    assert!(
        stored
            .iter()
            .all(|file| file.created_at == stored[0].created_at)
    );

    let outcomes = commit_claiming(&app, (3..6).map(upload).collect()).await;
    assert!(matches!(outcomes[0], Ok(Some(_))), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("P0001")),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(outcomes[2], Ok(Some(_))), "{:?}", outcomes[2]);
    let stored: std::collections::BTreeSet<Uuid> =
        [0, 1, 2, 3, 5].into_iter().map(|n| ids[n]).collect();
    assert_eq!(app.row_ids().await, stored);
    let intents: i64 = sqlx::query_scalar("SELECT count(*) FROM storage_intents")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        intents, 0,
        "every stored file's intent claimed with its row"
    );
}

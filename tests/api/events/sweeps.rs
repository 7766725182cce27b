//! What the sweep does is announced as well: a file past its lifetime goes as `file.deleted`
//! with reason `expired`, an unfinished resumable upload past its expiry as `upload.expired`;
//! and the outbox keeps delivered events only for `events.retention_secs`.

use std::{collections::HashMap, time::Duration};

use intake::events::outbox::{self, Attempt, Claimed, Fresh};
use serde_json::Value;
use uuid::Uuid;

use super::{Endpoint, delivering_to};
use crate::{
    helpers::{TestApp, file_part, random_bytes, spawn_app, spawn_app_with},
    tus::{Tus, id_of},
};

#[tokio::test]
async fn files_and_uploads_the_sweep_removes_are_announced_as_expired() {
    let mut endpoint = Endpoint::start(|_| 204).await;
    let with_webhook = delivering_to(&endpoint);
    let app = spawn_app_with(&with_webhook).await;
    let stored = app
        .upload_file("brief.bin", random_bytes(3000, 1), None)
        .await;
    let file: Value = stored.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    let tus = Tus::of(&app);
    let path = tus.created(100_000, "late.bin").await;
    assert_eq!(
        tus.patch(&path, 0, random_bytes(40_000, 2)).await.status(),
        204
    );
    // Time runs out for both.
    sqlx::query("UPDATE files SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE resumable_uploads SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    // The next instance sweeps as it starts.
    let _next = app.another_instance(&with_webhook).await;

    let mut events = HashMap::new();
    while events.len() < 3 {
        let event = endpoint.next().await.json();
        events.insert(event["type"].as_str().unwrap().to_owned(), event);
    }
    assert_eq!(
        events["file.stored"]["data"]["file"]["id"],
        file_id.as_str()
    );
    let deleted = &events["file.deleted"]["data"];
    assert_eq!(deleted["file"]["id"], file_id.as_str());
    assert_eq!(deleted["reason"], "expired");
    let upload = &events["upload.expired"]["data"]["upload"];
    assert_eq!(upload["id"], id_of(&path).to_string());
    assert_eq!(upload["filename"], "late.bin");
    assert_eq!(upload["length"], 100_000);
    assert_eq!(upload["received"], 40_000);
    assert_eq!(upload["partial"], false);
    super::assert_described(&app, "UploadExpired", &events["upload.expired"]["data"]).await;
}

/// The outbox's events, oldest first, as a sink reads them.
async fn events(app: &TestApp) -> Vec<Fresh> {
    let rows: Vec<(Uuid, i64, i64, String)> =
        sqlx::query_as("SELECT id, xid::text::int8, seq, type FROM events ORDER BY xid, seq")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    (rows.into_iter())
        .map(|(event_id, xid, seq, kind)| Fresh {
            event: Claimed {
                event_id,
                attempt: 1,
                kind,
                body: String::new(),
            },
            xid,
            seq,
            held: false,
        })
        .collect()
}

async fn event_ids(app: &TestApp) -> Vec<Uuid> {
    events(app).await.iter().map(|f| f.event.event_id).collect()
}

#[tokio::test]
async fn delivered_events_are_pruned_after_the_retention_and_waiting_ones_are_kept() {
    // This test is the sink's instance: it registers the sink, takes its lease, and moves its
    // cursor past two of three events, the first delivered and the second failed (queued).
    let app = spawn_app().await;
    outbox::register(&app.pool, &[("sink".into(), Vec::new())])
        .await
        .unwrap();
    for seed in 0..3 {
        let form = reqwest::multipart::Form::new()
            .part("file", file_part("p.bin", random_bytes(500, seed), None));
        assert_eq!(app.upload(form).await.status(), 201);
    }
    app.uploads_settled().await;
    let events = events(&app).await;
    assert_eq!(events.len(), 3);
    let holder = Uuid::new_v4();
    let lease = Duration::from_secs(60);
    outbox::read(&app.pool, "sink", holder, 0, lease)
        .await
        .unwrap();
    let failed = Attempt::Failed {
        error: "503".into(),
        retry: Duration::from_secs(60),
    };
    let read = &events[..2];
    let failures = [(&read[1].event, failed)];
    let moved = outbox::advance(&app.pool, "sink", holder, read, &failures, 12)
        .await
        .unwrap();
    assert_eq!(moved, Some(0), "moved, nothing failed for good");

    let retention = Duration::from_secs(3600);
    assert_eq!(
        outbox::prune(&app.pool, retention).await.unwrap(),
        0,
        "too young"
    );
    sqlx::query("UPDATE events SET occurred_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(outbox::prune(&app.pool, retention).await.unwrap(), 1);
    // The one queued for a retry stays, with its delivery, and the one past the cursor.
    assert_eq!(
        event_ids(&app).await,
        [read[1].event.event_id, events[2].event.event_id]
    );
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM event_deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 1);
}

//! What the sweep does is announced as well: a file past its lifetime goes as `file.deleted`
//! with reason `expired`, an unfinished resumable upload past its expiry as `upload.expired`;
//! and the outbox keeps delivered events only for `events.retention_secs`.

use std::{collections::HashMap, time::Duration};

use intake::events::outbox::{self, Attempt};
use serde_json::Value;

use super::{Endpoint, quick_delivery, webhook};
use crate::{
    helpers::{TestApp, file_part, random_bytes, spawn_app, spawn_app_with},
    tus::{Tus, id_of},
};

#[tokio::test]
async fn files_and_uploads_the_sweep_removes_are_announced_as_expired() {
    let mut endpoint = Endpoint::start(|_| 204).await;
    let url = endpoint.url();
    let with_webhook = |s: &mut intake::base::configuration::Settings| {
        quick_delivery(s);
        s.events.webhooks = vec![webhook(&url)];
    };
    let app = spawn_app_with(with_webhook).await;
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
    let _next = app.another_instance(with_webhook).await;

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

/// The outbox's event ids, oldest first.
async fn event_ids(app: &TestApp) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT id FROM events ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn delivered_events_are_pruned_after_the_retention_and_pending_ones_are_kept() {
    // This test is the sink's instance: it registers the sink, claims and settles as one would.
    let app = spawn_app().await;
    outbox::register(&app.pool, &[("sink".into(), Vec::new())])
        .await
        .unwrap();
    for seed in 0..2 {
        let form = reqwest::multipart::Form::new()
            .part("file", file_part("p.bin", random_bytes(500, seed), None));
        assert_eq!(app.upload(form).await.status(), 201);
    }
    app.uploads_settled().await;
    let ids = event_ids(&app).await;
    assert_eq!(ids.len(), 2);
    let lease = Duration::from_secs(60);
    let claimed = outbox::claim(&app.pool, "sink", 1, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let delivered = [(&claimed[0], Attempt::Delivered)];
    outbox::settle(&app.pool, "sink", &delivered, 12)
        .await
        .unwrap();

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
    // The one still waiting for its sink stays, with its delivery.
    let pending: Vec<_> = ids
        .into_iter()
        .filter(|id| *id != claimed[0].event_id)
        .collect();
    assert_eq!(event_ids(&app).await, pending);
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM event_deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 1, "the pruned event's deliveries went with it");
}

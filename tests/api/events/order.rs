//! A sink reads the outbox in the order of the transactions that wrote it, and only as far as
//! no transaction still running can write behind it: an event written early and committed late
//! is neither skipped nor read after the events committed meanwhile.

use std::time::Duration;

use intake::events::outbox;
use uuid::Uuid;

use super::{Endpoint, delivering_to};
use crate::helpers::{random_bytes, spawn_app_with};

#[tokio::test]
async fn an_event_committed_late_is_read_before_the_ones_committed_meanwhile() {
    let mut endpoint = Endpoint::start(|_| 204).await;
    let app = spawn_app_with(delivering_to(&endpoint)).await;
    // A sink the test reads itself, beside the webhook the app delivers to.
    outbox::register(&app.pool, &[("probe".into(), Vec::new())])
        .await
        .unwrap();

    // A transaction that writes its event first and commits last (a slow one of any instance).
    let mut slow = app.pool.begin().await.unwrap();
    let late: Uuid = sqlx::query_scalar(
        "INSERT INTO events (type, subject, payload)
         VALUES ('upload.expired', gen_random_uuid(), '{}') RETURNING id",
    )
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    let stored = app
        .upload_file("meanwhile.bin", random_bytes(500, 1), None)
        .await;
    assert_eq!(stored.status(), 201);

    // Committed, the stored file's event is not read while the earlier transaction runs.
    let (probe, lease) = (Uuid::new_v4(), Duration::from_secs(60));
    let read = outbox::read(&app.pool, "probe", probe, 32, lease)
        .await
        .unwrap();
    assert!(read.is_empty(), "{read:?}");

    slow.commit().await.unwrap();
    // Both reach the webhook, the late one not skipped (events of different files go out at
    // once, so they may arrive in either order).
    let mut received: Vec<String> = Vec::new();
    for _ in 0..2 {
        let event = endpoint.next().await.json();
        received.push(
            event["data"]["file"]["filename"]
                .as_str()
                .unwrap_or("late")
                .into(),
        );
    }
    received.sort();
    assert_eq!(received, ["late", "meanwhile.bin"]);
    // Once the webhook had the stored file's event, no transaction older than it runs: the probe
    // reads both, the late one first.
    let read = outbox::read(&app.pool, "probe", probe, 32, lease)
        .await
        .unwrap();
    let kinds: Vec<_> = read
        .iter()
        .map(|f| (f.event.event_id, f.event.kind.as_str()))
        .collect();
    assert_eq!(kinds.len(), 2, "{read:?}");
    assert_eq!(kinds[0], (late, "upload.expired"));
    assert_eq!(kinds[1].1, "file.stored");
}

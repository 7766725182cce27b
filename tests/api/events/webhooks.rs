//! Webhooks: every stored and deleted file announced to each endpoint, signed as Standard
//! Webhooks says, retried until the endpoint takes it, in order for each file; an endpoint that
//! answers 410 Gone is disabled until `intake events retry`.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use reqwest::multipart::Form;
use serde_json::Value;
use uuid::Uuid;

use super::{Endpoint, Received, SECRET, assert_described, delivering_to, signed_with};
use crate::{
    helpers::{file_part, random_bytes, sha256_hex, spawn_app_with},
    tus::{Tus, id_of},
};

/// Refused (500) the first three times each event comes, then taken (204).
fn three_failures_each() -> impl Fn(&Received) -> u16 + Send + Sync {
    let seen = Mutex::new(HashMap::<String, u32>::new());
    move |received| {
        let mut seen = seen.lock().unwrap();
        let attempts = seen
            .entry(received.header("webhook-id").to_owned())
            .or_default();
        *attempts += 1;
        if *attempts <= 3 { 500 } else { 204 }
    }
}

fn event_of(received: &Received) -> (String, String) {
    let event = received.json();
    let file = event["data"]["file"]["id"].as_str().unwrap().to_owned();
    (event["type"].as_str().unwrap().to_owned(), file)
}

#[tokio::test]
async fn stored_and_deleted_files_reach_a_webhook_signed_in_order_though_each_fails_three_times() {
    let mut endpoint = Endpoint::start(three_failures_each()).await;
    let app = spawn_app_with(delivering_to(&endpoint)).await;
    let (small, large) = (b"alpha".to_vec(), random_bytes(300_000, 7));
    let form = Form::new()
        .part("a", file_part("a.txt", small.clone(), Some("text/plain")))
        .part("b", file_part("b.bin", large.clone(), None));
    let response = app.upload_batch(form).await;
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let batch: Value = response.json().await.unwrap();
    let (a, b) = (batch["files"][0].clone(), batch["files"][1].clone());
    let a_id = a["id"].as_str().unwrap().to_owned();

    // `a` is deleted while its `file.stored` waits for its next attempt: its `file.deleted` may
    // not overtake it.
    let mut log = Vec::new();
    loop {
        let received = endpoint.next().await;
        let first_of_a = event_of(&received) == ("file.stored".into(), a_id.clone());
        log.push(received);
        if first_of_a {
            break;
        }
    }
    let deleted = app
        .client
        .delete(app.url(&format!("/files/{a_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // And a file sent with tus.
    let tus = Tus::of(&app);
    let c_bytes = random_bytes(70_000, 8);
    let path = tus.created(c_bytes.len() as u64, "c.bin").await;
    assert_eq!(tus.patch(&path, 0, c_bytes.clone()).await.status(), 204);
    let c_id = id_of(&path).to_string();

    let expected: HashSet<(String, String)> = [
        ("file.stored", &a_id),
        ("file.stored", &b["id"].as_str().unwrap().to_owned()),
        ("file.stored", &c_id),
        ("file.deleted", &a_id),
    ]
    .into_iter()
    .map(|(kind, id)| (kind.to_owned(), id.clone()))
    .collect();
    let mut taken = HashMap::new();
    while taken.len() < expected.len() {
        let received = endpoint.next().await;
        if received.status == 204 {
            let index = log.len();
            assert!(
                taken.insert(event_of(&received), index).is_none(),
                "an event taken twice: {:?}",
                received.json()
            );
        }
        log.push(received);
    }
    assert_eq!(taken.keys().cloned().collect::<HashSet<_>>(), expected);

    let mut attempts = HashMap::<String, u32>::new();
    for received in &log {
        assert!(
            signed_with(SECRET, received),
            "not signed as the specification says"
        );
        assert_eq!(received.header("content-type"), "application/json");
        let event = received.json();
        assert_eq!(event["id"], received.header("webhook-id"));
        let id: Uuid = event["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(id.get_version_num(), 7, "event ids are UUID v7");
        let timestamp = received.header("webhook-timestamp").parse::<i64>().unwrap();
        assert!(timestamp > 1_700_000_000, "Unix seconds");
        *attempts
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // Each event was refused three times and taken the fourth: none was given up or lost.
    assert_eq!(attempts.len(), 4);
    assert!(attempts.values().all(|n| *n == 4), "{attempts:?}");

    // Nothing of `a`'s deletion was sent before its storing was taken.
    let a_stored = taken[&("file.stored".to_owned(), a_id.clone())];
    let first_deletion = log
        .iter()
        .position(|r| event_of(r) == ("file.deleted".into(), a_id.clone()))
        .unwrap();
    assert!(
        first_deletion > a_stored,
        "file.deleted overtook file.stored"
    );

    // The payloads: the file as the API shows it, and how it came in.
    let payload = |kind: &str, id: &str| {
        let index = taken[&(kind.to_owned(), id.to_owned())];
        log[index].json()
    };
    for (file, bytes) in [(&a, &small), (&b, &large)] {
        let event = payload("file.stored", file["id"].as_str().unwrap());
        let data = &event["data"];
        for field in [
            "id",
            "filename",
            "content_type",
            "size",
            "sha256",
            "created_at",
        ] {
            assert_eq!(data["file"][field], file[field], "{field}");
        }
        assert_eq!(data["file"]["sha256"], sha256_hex(bytes));
        assert!(data["file"]["owner"].is_i64());
        assert_eq!(data["protocol"], "multipart");
        assert_eq!(data["request_id"], request_id);
        assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    for event in taken.values().map(|index| log[*index].json()) {
        assert_described(&app, "Event", &event).await;
        let data = if event["type"] == "file.stored" {
            "FileStored"
        } else {
            "FileDeleted"
        };
        assert_described(&app, data, &event["data"]).await;
    }
    let c = payload("file.stored", &c_id);
    assert_eq!(c["data"]["protocol"], "tus");
    assert_eq!(c["data"]["file"]["sha256"], sha256_hex(&c_bytes));
    assert_eq!(c["data"]["file"]["size"], c_bytes.len());
    let gone = payload("file.deleted", &a_id);
    assert_eq!(gone["data"]["reason"], "deleted");
    assert_eq!(gone["data"]["file"]["sha256"], a["sha256"]);
}

#[tokio::test]
async fn events_write_times_as_the_api_does() {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    let app = spawn_app_with(|_| {}).await;
    // Whole seconds, and fractions whose last digits are zeros, which the API leaves out.
    for micros in [0, 500_000, 304_910, 304_911, 10, 999_999] {
        let at = OffsetDateTime::from_unix_timestamp(1_765_000_000).unwrap()
            + time::Duration::microseconds(micros);
        let written: String = sqlx::query_scalar("SELECT rfc3339($1)")
            .bind(at)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(written, at.format(&Rfc3339).unwrap(), "{micros} µs");
    }
}

//! NATS JetStream, a real server (`nats-server -js` on 127.0.0.1:4222, which .ci/run starts
//! when none answers): each event published to `{prefix}{type}` with `Nats-Msg-Id` = its id,
//! counted delivered only once JetStream acknowledged it; what an instance committed and could
//! not publish before a kill -9 is published by the next.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream};
use futures_util::StreamExt;
use reqwest::multipart::Form;
use serde_json::Value;
use uuid::Uuid;

use super::{quick_delivery, upload_to};
use crate::{
    child::ChildServer,
    helpers::{
        GENEROUS_TIMEOUT_MS, file_part, may_skip, random_bytes, reserved_port, sha256_hex,
        spawn_app_with,
    },
    tus::{Tus, id_of},
};

const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A stream of this test's own (its subjects under a prefix no other test uses), and a
/// consumer reading it from its start; `None` (after `may_skip`) without a NATS server.
struct TestStream {
    prefix: String,
    messages: jetstream::consumer::pull::Ordered,
}

impl TestStream {
    async fn create() -> Option<Self> {
        let Ok(client) = async_nats::connect(NATS_URL).await else {
            may_skip("no NATS server answers at 127.0.0.1:4222 (.ci/run starts nats-server -js)");
            return None;
        };
        let context = jetstream::new(client);
        let name = format!("intake_test_{}", Uuid::now_v7().simple());
        let prefix = format!("{name}.");
        let stream = context
            .create_stream(stream::Config {
                name,
                subjects: vec![format!("{prefix}>")],
                // A stream a failed test leaves behind goes by itself.
                max_age: Duration::from_secs(3600),
                ..Default::default()
            })
            .await
            .expect("JetStream is enabled (nats-server -js)");
        let consumer = stream
            .create_consumer(OrderedConfig::default())
            .await
            .unwrap();
        let messages = consumer.messages().await.unwrap();
        Some(Self { prefix, messages })
    }

    /// The next message: (subject without the prefix, `Nats-Msg-Id`, body).
    async fn next(&mut self) -> (String, String, Value) {
        let message = tokio::time::timeout(
            Duration::from_millis(GENEROUS_TIMEOUT_MS),
            self.messages.next(),
        )
        .await
        .expect("a message arrives")
        .expect("the consumer goes on")
        .expect("a message");
        let headers = message.headers.as_ref().expect("headers");
        let id = headers.get("Nats-Msg-Id").expect("Nats-Msg-Id").to_string();
        let subject = message
            .subject
            .strip_prefix(&self.prefix)
            .unwrap()
            .to_owned();
        (
            subject,
            id,
            serde_json::from_slice(&message.payload).unwrap(),
        )
    }
}

#[tokio::test]
async fn stored_and_deleted_files_are_published_to_jetstream_with_their_event_ids() {
    let Some(mut stream) = TestStream::create().await else {
        return;
    };
    let prefix = stream.prefix.clone();
    let app = spawn_app_with(|s| {
        quick_delivery(s);
        s.events.nats.url = NATS_URL.into();
        s.events.nats.subject_prefix = prefix;
    })
    .await;
    let (a, b) = (random_bytes(2_000, 1), random_bytes(200_000, 2));
    let form = Form::new()
        .part("files", file_part("a.bin", a.clone(), None))
        .part(
            "files",
            file_part("b.txt", b"bravo".to_vec(), Some("text/plain")),
        );
    let response = app.upload_batch(form).await;
    assert_eq!(response.status(), 201);
    let batch: Value = response.json().await.unwrap();
    let tus = Tus::of(&app);
    let path = tus.created(b.len() as u64, "c.bin").await;
    assert_eq!(tus.patch(&path, 0, b.clone()).await.status(), 204);
    // And one whole file in an IETF creation.
    let ietf = app
        .client
        .post(app.url("/resumable/"))
        .header("Upload-Draft-Interop-Version", "8")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/octet-stream")
        .body(a.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ietf.status(), 200);
    let d: Value = ietf.json().await.unwrap();
    let a_id = batch["files"][0]["id"].as_str().unwrap().to_owned();
    let deleted = app
        .client
        .delete(app.url(&format!("/files/{a_id}")))
        .send()
        .await;
    assert_eq!(deleted.unwrap().status(), 204);

    let mut published = HashMap::new();
    for _ in 0..5 {
        let (subject, id, event) = stream.next().await;
        assert_eq!(event["id"], id.as_str(), "Nats-Msg-Id is the event id");
        assert_eq!(
            event["type"],
            subject.as_str(),
            "published to {{prefix}}{{type}}"
        );
        let file = event["data"]["file"]["id"].as_str().unwrap().to_owned();
        assert!(
            published.insert((subject, file), event).is_none(),
            "published twice"
        );
    }
    let event = |kind: &str, id: &str| published[&(kind.to_owned(), id.to_owned())].clone();
    let stored_a = event("file.stored", &a_id);
    assert_eq!(stored_a["data"]["file"]["sha256"], sha256_hex(&a));
    assert_eq!(stored_a["data"]["file"]["filename"], "a.bin");
    assert_eq!(stored_a["data"]["protocol"], "multipart");
    let b_id = batch["files"][1]["id"].as_str().unwrap();
    assert_eq!(
        event("file.stored", b_id)["data"]["file"]["content_type"],
        "text/plain"
    );
    let c = event("file.stored", &id_of(&path).to_string());
    assert_eq!(c["data"]["protocol"], "tus");
    assert_eq!(c["data"]["file"]["size"], b.len());
    assert_eq!(event("file.deleted", &a_id)["data"]["reason"], "deleted");
    let d = event("file.stored", d["id"].as_str().unwrap());
    assert_eq!(d["data"]["protocol"], "ietf");
    assert_eq!(d["data"]["file"]["sha256"], sha256_hex(&a));

    // The ids published are the outbox's, one per file and change.
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM events ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let mut sent: Vec<String> = published
        .values()
        .map(|e| e["id"].as_str().unwrap().into())
        .collect();
    sent.sort();
    let mut kept = ids.clone();
    kept.sort();
    assert_eq!(sent, kept);
}

#[tokio::test]
async fn events_an_instance_committed_but_never_published_are_published_by_the_next_after_kill_9() {
    let Some(mut stream) = TestStream::create().await else {
        return;
    };
    let db = spawn_app_with(|s| s.storage.sweep_interval_secs = 365 * 24 * 3600).await;
    let root = tempfile::tempdir().unwrap();
    let nowhere = format!("nats://127.0.0.1:{}", reserved_port());
    let paced = [
        ("APP__EVENTS__POLL_INTERVAL_MS", "20"),
        ("APP__EVENTS__RETRY_BASE_MS", "200"),
        ("APP__EVENTS__RETRY_MAX_MS", "1000"),
        ("APP__EVENTS__NATS__TIMEOUT_MS", "1000"),
        ("APP__EVENTS__NATS__SUBJECT_PREFIX", stream.prefix.as_str()),
    ];
    // The first instance's NATS is where none listens: it commits events it cannot publish.
    let env: Vec<_> = paced
        .iter()
        .copied()
        .chain([("APP__EVENTS__NATS__URL", nowhere.as_str())])
        .collect();
    let mut first = ChildServer::start(&db.db_url(), root.path(), &env).await;
    let client = reqwest::Client::new();
    let mut files = Vec::new();
    for seed in 0..2 {
        files.push(upload_to(&client, &first, "k.bin", seed).await);
    }
    first.child.kill().await.unwrap();

    let env: Vec<_> = paced
        .iter()
        .copied()
        .chain([("APP__EVENTS__NATS__URL", NATS_URL)])
        .collect();
    let mut second = ChildServer::start(&db.db_url(), root.path(), &env).await;
    let mut published = HashMap::new();
    for _ in 0..2 {
        let (subject, id, event) = stream.next().await;
        assert_eq!(subject, "file.stored");
        assert_eq!(event["id"], id.as_str());
        let file = event["data"]["file"]["id"].as_str().unwrap().to_owned();
        assert!(published.insert(file, id).is_none(), "one event per file");
    }
    let mut announced: Vec<_> = published.keys().cloned().collect();
    announced.sort();
    files.sort();
    assert_eq!(announced, files);
    let ids: Vec<(String, String)> =
        sqlx::query_as("SELECT subject::text, id::text FROM events WHERE type = 'file.stored'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(ids.into_iter().collect::<HashMap<_, _>>(), published);
    second.child.kill().await.unwrap();
}

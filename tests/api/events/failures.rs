//! Endpoints that fail, against the real binary (its log lines are what the tests wait for):
//! one that answers 410 Gone is disabled for every instance until `intake events retry`; a
//! dead one is sent one batch per backoff, the rest waiting in order; a Postgres outage holds
//! delivery until it is back; an event given up on holds back the later events of its file,
//! and a retry sends them in order.

use std::collections::HashSet;

use serde_json::Value;

use super::{Endpoint, Received, SECRET, WebhookChild, intake_events, signed_with, switching};
use crate::helpers::{file_part, random_bytes, spawn_app};

fn file_of(received: &Received) -> String {
    received.json()["data"]["file"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_endpoint_that_answers_410_is_disabled_until_its_events_are_retried() {
    // Gone at first; once the operator retries, the endpoint takes what it is sent.
    let (mut endpoint, gone) = switching(410, 200).await;
    let db = spawn_app().await;
    let mut child = WebhookChild::start(&db, &endpoint, &["file.stored"], &[]).await;
    let first = child.upload("f.bin", 0).await;
    assert_eq!(endpoint.next().await.status, 410);
    let disabled = child.server.wait_for_log("event sink disabled").await;
    assert_eq!(disabled["sink"], "receiver");
    let second = child.upload("f.bin", 1).await;

    // The second file's event was not sent to a disabled endpoint, and both are listed failed.
    let metrics = child
        .client
        .get(child.server.url("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"intake_event_sink_disabled{sink="receiver"} 1"#),
        "{metrics}"
    );
    let failed = intake_events(&db.db_url(), &["list", "--failed"]).await;
    assert!(
        failed.contains(&first) && failed.contains(&second),
        "{failed}"
    );
    assert_eq!(failed.matches("410 Gone").count(), 2, "{failed}");

    gone.flip();
    let retried = intake_events(&db.db_url(), &["retry", "--all"]).await;
    assert!(retried.starts_with("2 "), "{retried}");
    let mut delivered = HashSet::new();
    while delivered.len() < 2 {
        let received = endpoint.next().await;
        assert_eq!(received.status, 200);
        assert!(signed_with(SECRET, &received));
        delivered.insert(file_of(&received));
    }
    assert_eq!(delivered, HashSet::from([first, second]));
}

#[tokio::test]
async fn delivery_waits_out_a_postgres_outage_and_goes_on_with_the_same_event() {
    let (mut endpoint, recovered) = switching(503, 204).await;
    let db = spawn_app().await;
    let mut child = WebhookChild::start(&db, &endpoint, &[], &[]).await;
    child.upload("pg.bin", 1).await;
    let first = endpoint.next().await;
    assert_eq!(first.status, 503);
    let id = first.header("webhook-id").to_owned();

    db.set_connections_allowed(false).await;
    child
        .server
        .wait_for_log("could not claim events; trying again")
        .await;
    recovered.flip();
    db.set_connections_allowed(true).await;
    loop {
        let received = endpoint.next().await;
        assert_eq!(
            received.header("webhook-id"),
            id,
            "the same event, with the same id"
        );
        if received.status == 204 {
            break;
        }
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn an_event_given_up_on_holds_back_the_later_events_of_its_file_until_retried() {
    let (mut endpoint, recovered) = switching(500, 204).await;
    let db = spawn_app().await;
    // One attempt each: the first failure is the last.
    let once = [("APP__EVENTS__MAX_ATTEMPTS", "1")];
    let mut child = WebhookChild::start(&db, &endpoint, &[], &once).await;
    let id = child.upload("held.bin", 1).await;
    assert_eq!(endpoint.next().await.status, 500);
    child
        .server
        .wait_for_log("events failed after their last attempt")
        .await;

    let url = child.server.url(&format!("/files/{id}"));
    assert_eq!(child.client.delete(url).send().await.unwrap().status(), 204);
    // Nothing is pending: the deletion failed with the storing it may not overtake.
    let listed = intake_events(&db.db_url(), &["list"]).await;
    assert_eq!(listed.matches(" pending ").count(), 0, "{listed}");
    assert_eq!(listed.matches(" failed ").count(), 2, "{listed}");
    assert!(listed.contains("500 Internal Server Error"), "{listed}");
    assert!(
        listed.contains("an earlier event of the same file failed"),
        "{listed}"
    );

    recovered.flip();
    let retried = intake_events(&db.db_url(), &["retry", "--all"]).await;
    assert!(retried.starts_with("2 "), "{retried}");
    let kinds: Vec<(Value, String)> = [endpoint.next().await, endpoint.next().await]
        .iter()
        .map(|r| (r.json()["type"].clone(), file_of(r)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("file.stored".into(), id.clone()),
            ("file.deleted".into(), id)
        ],
        "retried in their order"
    );
}

#[tokio::test]
async fn an_endpoint_that_fails_everything_is_sent_one_batch_per_backoff() {
    let mut endpoint = Endpoint::start(|_| 503).await;
    let db = spawn_app().await;
    // Backoffs of an hour: nothing is sent again while the test looks.
    let hour = "3600000";
    let env = [
        ("APP__EVENTS__RETRY_BASE_MS", hour),
        ("APP__EVENTS__RETRY_MAX_MS", hour),
        ("APP__UPLOAD__MAX_FILES", "40"),
    ];
    let mut child = WebhookChild::start(&db, &endpoint, &[], &env).await;
    // Forty files in one transaction: forty events that can be read at once.
    let form = (0..40).fold(reqwest::multipart::Form::new(), |form, seed| {
        form.part("file", file_part("d.bin", random_bytes(100, seed), None))
    });
    let response = (child.client.post(child.server.url("/files")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    for _ in 0..32 {
        assert_eq!(endpoint.next().await.status, 503);
    }
    let waiting = child
        .server
        .wait_for_log("the sink failed every new event it was sent; waiting before sending more")
        .await;
    assert_eq!(waiting["failed"], 32);
    assert_eq!(endpoint.untaken(), 0, "one batch, then the backoff");
    // The batch sent is queued for its retries; the rest waits past the cursor, in order.
    let listed = intake_events(&db.db_url(), &["list"]).await;
    let attempts = |n: &str| {
        (listed.lines())
            .filter(|line| line.contains(" pending ") && line.split_whitespace().nth(5) == Some(n))
            .count()
    };
    assert_eq!((attempts("1"), attempts("0")), (32, 8), "{listed}");
}

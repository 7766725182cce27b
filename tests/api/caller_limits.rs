//! What one caller may hold at once: uploads in flight on an instance
//! (`upload.max_in_flight_per_user`), unfinished resumable uploads (`tus.max_unfinished_per_user`).

use bytes::Bytes;
use futures_util::future::join_all;
use reqwest::{RequestBuilder, multipart};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    helpers::{TestApp, assert_problem, random_bytes, spawn_app_with},
    tus::{OCTETS, Tus, header},
};

type Sender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Sends `request` with a body that brings a first chunk, then waits for more: the upload stays
/// in flight until the sender is dropped (the body then ends).
async fn stalled(
    app: &TestApp,
    request: RequestBuilder,
    multipart: bool,
) -> (Sender, JoinHandle<u16>) {
    let (sender, mut receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let body = reqwest::Body::wrap_stream(stream);
    let request = match multipart {
        true => request.multipart(
            multipart::Form::new()
                .part("file", multipart::Part::stream(body).file_name("slow.bin")),
        ),
        false => request.body(body),
    };
    let before = *app.uploads_in_flight.borrow();
    let sent = tokio::spawn(async move { request.send().await.unwrap().status().as_u16() });
    sender
        .send(Ok(Bytes::from(random_bytes(1000, 1))))
        .await
        .unwrap();
    let mut in_flight = app.uploads_in_flight.clone();
    in_flight.wait_for(|n| *n == before + 1).await.unwrap();
    (sender, sent)
}

fn upload_request(app: &TestApp, token: Option<&str>) -> RequestBuilder {
    let request = app.client.post(app.url("/upload"));
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn small(request: RequestBuilder) -> RequestBuilder {
    request.multipart(multipart::Form::new().part(
        "file",
        multipart::Part::bytes(random_bytes(100, 2)).file_name("small.bin"),
    ))
}

#[tokio::test]
async fn a_user_with_every_upload_slot_taken_gets_429_across_multipart_and_tus() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.upload.max_in_flight_per_user = 2;
    })
    .await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    let tus = Tus::of(&app).with_token(&ada);
    let path = tus.created(1_000_000, "slow.bin").await;
    let patch = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 0)
        .header("Content-Type", OCTETS);
    let (first, first_sent) = stalled(&app, patch, false).await;
    let (second, second_sent) = stalled(&app, upload_request(&app, Some(&ada)), true).await;

    let refused = small(upload_request(&app, Some(&ada)))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_problem(refused, 429, "too_many_uploads").await;
    let other = tus.created(10, "other.bin").await;
    assert_problem(
        tus.patch(&other, 0, vec![1u8; 10]).await,
        429,
        "too_many_uploads",
    )
    .await;
    // Another user has slots of their own; a creation without data takes none.
    let bobs = small(upload_request(&app, Some(&bob)))
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), 201);

    // An upload that ends, however it ends, gives its slot back.
    drop(second);
    assert_eq!(second_sent.await.unwrap(), 201);
    assert_eq!(tus.patch(&other, 0, vec![1u8; 10]).await.status(), 204);
    drop(first);
    assert_eq!(first_sent.await.unwrap(), 204);
    let stored = small(upload_request(&app, Some(&ada)))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
}

#[tokio::test]
async fn anonymous_callers_have_slots_per_client_address() {
    let app = spawn_app_with(|s| {
        s.upload.max_in_flight_per_user = 1;
        s.rate_limit.trust_forwarded_for = true;
    })
    .await;
    let from = |address: &str| upload_request(&app, None).header("X-Forwarded-For", address);
    let (_held, _sent) = stalled(&app, from("203.0.113.7"), true).await;

    let refused = small(from("203.0.113.7")).send().await.unwrap();
    assert_problem(refused, 429, "too_many_uploads").await;
    let elsewhere = small(from("198.51.100.1")).send().await.unwrap();
    assert_eq!(elsewhere.status(), 201);
}

const EXPIRY_SECS: u64 = 3600;

async fn with_unfinished_cap(max: u64) -> (TestApp, String) {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.tus.max_unfinished_per_user = max;
        s.tus.expiry_secs = EXPIRY_SECS;
    })
    .await;
    let token = app.user_with_token("ada").await;
    (app, token)
}

#[tokio::test]
async fn a_user_holding_the_most_unfinished_uploads_gets_429_until_one_ends() {
    let (app, ada) = with_unfinished_cap(3).await;
    let bob = app.user_with_token("bob").await;
    let tus = Tus::of(&app).with_token(&ada);
    let mut paths = Vec::new();
    for n in 0..3 {
        paths.push(tus.created(10, &format!("{n}.bin")).await);
    }

    let refused = tus.create(10, "fourth.bin").await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    // The first of the three expires within tus.expiry_secs.
    assert!((1..=EXPIRY_SECS).contains(&retry_after), "{retry_after}");
    assert_problem(refused, 429, "too_many_unfinished_uploads").await;
    let deferred = tus.create_deferred().await;
    assert_problem(deferred, 429, "too_many_unfinished_uploads").await;
    Tus::of(&app).with_token(&bob).created(10, "bobs.bin").await;

    // A finished upload and a terminated one are not unfinished.
    assert_eq!(tus.patch(&paths[0], 0, vec![1u8; 10]).await.status(), 204);
    tus.created(10, "fourth.bin").await;
    assert_eq!(tus.delete(&paths[1]).await.status(), 204);
    tus.created(10, "fifth.bin").await;
    assert_eq!(tus.create(10, "sixth.bin").await.status(), 429);
}

#[tokio::test]
async fn concurrent_creations_cannot_together_pass_the_unfinished_cap() {
    let (app, ada) = with_unfinished_cap(3).await;
    let tus = Tus::of(&app).with_token(&ada);

    let statuses: Vec<u16> = join_all((0..12).map(|n| {
        let tus = &tus;
        async move { tus.create(10, &format!("{n}.bin")).await.status().as_u16() }
    }))
    .await;

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        9,
        "{statuses:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM resumable_uploads")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

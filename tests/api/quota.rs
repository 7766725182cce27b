//! Quotas: checked while the bytes stream, reserved before they are written, settled on commit.

use futures_util::{StreamExt, future::join_all, stream};
use intake::access::quota;
use reqwest::multipart::Part;

use crate::helpers::{TestApp, assert_problem, chunked_part, random_bytes, spawn_app_with};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

async fn spawn_with_quota(quota: usize) -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = quota as u64;
    })
    .await
}

impl TestApp {
    /// (used_bytes, reserved_bytes, reservation rows) of a user, once the usage changes that the
    /// server applies every second are applied.
    pub(crate) async fn usage(&self, user: &str) -> (i64, i64, i64) {
        quota::apply_changes(&self.pool, None).await.unwrap();
        sqlx::query_as(
            "SELECT used_bytes, reserved_bytes,
                    (SELECT count(*) FROM quota_reservations r WHERE r.user_id = u.id)
             FROM users u WHERE name = $1",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn assert_stored(&self, token: &str, part: Part) {
        assert_eq!(self.upload_as(token, part).await.status(), 201);
    }

    async fn stored_sizes(&self) -> Vec<i64> {
        sqlx::query_scalar("SELECT size FROM files ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

fn sized(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("sized.bin")
}

#[tokio::test]
async fn crossing_the_quota_mid_stream_is_413_and_keeps_nothing() {
    let app = spawn_with_quota(MIB).await;
    let token = app.user_with_token("alice").await;
    app.assert_stored(&token, sized(random_bytes(600 * KIB, 1)))
        .await;

    // 1 MiB more, then a body that never ends: only a check made while streaming can answer.
    let endless =
        stream::iter(vec![Ok::<_, std::io::Error>(random_bytes(MIB, 2))]).chain(stream::pending());
    let part = Part::stream(reqwest::Body::wrap_stream(endless)).file_name("endless.bin");
    let refused = app.upload_as(&token, part).await;
    let problem = assert_problem(refused, 413, "quota_exceeded").await;
    assert_eq!(
        problem["detail"],
        "the upload would go over your quota of 1048576 bytes"
    );

    let refused = app
        .upload_as(&token, sized(random_bytes(600 * KIB, 3)))
        .await;
    assert_problem(refused, 413, "quota_exceeded").await;
    let refused = app
        .upload_as(&token, chunked_part(random_bytes(600 * KIB, 4)))
        .await;
    assert_problem(refused, 413, "quota_exceeded").await;
    app.uploads_settled().await;
    assert_eq!(app.usage("alice").await, (600 * KIB as i64, 0, 0));

    // What is left still fits, to the byte.
    let rest = MIB - 600 * KIB;
    app.assert_stored(&token, chunked_part(random_bytes(rest, 5)))
        .await;
    assert_eq!(app.usage("alice").await, (MIB as i64, 0, 0));
    assert_eq!(app.assert_consistent().await.len(), 2);
}

#[tokio::test]
async fn me_shows_what_the_caller_stores_and_their_quota() {
    let app = spawn_with_quota(MIB).await;
    let token = app.user_with_token("alice").await;
    let me = || async {
        let response = app.get_as(&token, "/me").await;
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await.unwrap()
    };
    assert_eq!(
        me().await,
        serde_json::json!({"name": "alice", "used_bytes": 0, "quota_bytes": MIB})
    );
    app.assert_stored(&token, sized(random_bytes(300 * KIB, 4)))
        .await;
    // At once, before the usage is folded into the user's row.
    assert_eq!(me().await["used_bytes"], 300 * KIB);
    assert_problem(app.get("/me").await, 401, "unauthorized").await;
}

#[tokio::test]
async fn deleting_a_file_gives_its_bytes_back() {
    let app = spawn_with_quota(MIB).await;
    let token = app.user_with_token("alice").await;
    let first = app
        .upload_as(&token, sized(random_bytes(800 * KIB, 1)))
        .await;
    let first: serde_json::Value = first.json().await.unwrap();
    let refused = app
        .upload_as(&token, sized(random_bytes(800 * KIB, 2)))
        .await;
    assert_problem(refused, 413, "quota_exceeded").await;

    let deleted = app
        .client
        .delete(app.url(&format!("/files/{}", first["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.usage("alice").await, (0, 0, 0));
    app.assert_stored(&token, sized(random_bytes(800 * KIB, 3)))
        .await;
}

#[tokio::test]
async fn each_user_has_their_own_quota() {
    let app = spawn_with_quota(MIB).await;
    let alice = app.user_with_token("alice").await;
    let bob = app.user_with_token("bob").await;
    app.assert_stored(&alice, sized(random_bytes(900 * KIB, 1)))
        .await;
    app.assert_stored(&bob, sized(random_bytes(900 * KIB, 2)))
        .await;
}

/// Six uploads of 1.25 MiB at once against a 3 MiB quota.
async fn race(app: &TestApp, token: &str, part: fn(Vec<u8>) -> Part) -> Vec<u16> {
    let uploads = (0..6).map(|seed| {
        let bytes = random_bytes(MIB + MIB / 4, seed);
        async move { app.upload_as(token, part(bytes)).await }
    });
    let mut statuses = Vec::new();
    for response in join_all(uploads).await {
        let status = response.status().as_u16();
        if status != 201 {
            assert_problem(response, 413, "quota_exceeded").await;
        }
        statuses.push(status);
    }
    app.uploads_settled().await;
    statuses
}

#[tokio::test]
async fn concurrent_uploads_cannot_together_go_over_the_quota() {
    let app = spawn_with_quota(3 * MIB).await;
    let token = app.user_with_token("alice").await;

    let statuses = race(&app, &token, sized).await;

    // Each announced its length and reserved it whole: the first two to do so fit.
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    let stored: i64 = app.stored_sizes().await.iter().sum();
    assert_eq!(stored, 2 * (MIB + MIB / 4) as i64);
    assert_eq!(app.usage("alice").await, (stored, 0, 0));
    app.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_chunked_uploads_cannot_together_go_over_the_quota() {
    let app = spawn_with_quota(3 * MIB).await;
    let token = app.user_with_token("alice").await;

    let statuses = race(&app, &token, chunked_part).await;

    // Without lengths they reserve as they go: which ones win (if any: six can each hold half
    // a MiB when the quota runs out) is up to the race, but what is answered 201 is stored
    // whole, the rest keeps nothing, and never more than the quota.
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let sizes = app.stored_sizes().await;
    assert_eq!(
        sizes,
        vec![(MIB + MIB / 4) as i64; accepted],
        "{statuses:?}"
    );
    assert!(accepted <= 2, "{statuses:?}");
    let stored: i64 = sizes.iter().sum();
    assert_eq!(app.usage("alice").await, (stored, 0, 0));
    // The losers gave back all they had reserved: exactly what is left still fits.
    let left = 3 * MIB - stored as usize;
    // On a new connection: a pooled one that carried a refused chunked upload can time out
    // under load on a bucket (see the issue filed about it), which is not this test's promise.
    let fresh = reqwest::Client::new()
        .post(app.url("/upload"))
        .bearer_auth(&token)
        .multipart(
            reqwest::multipart::Form::new().part("file", chunked_part(random_bytes(left, 9))),
        )
        .send()
        .await
        .expect("request sent");
    assert_eq!(fresh.status(), 201);
    assert_eq!(app.usage("alice").await, (3 * MIB as i64, 0, 0));
    app.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_chunked_uploads_that_fit_together_are_all_stored() {
    const SIZE: usize = 30_000;
    let app = spawn_with_quota(10 * SIZE).await;
    let token = app.user_with_token("alice").await;

    let uploads = (0..10).map(|seed| {
        let part = chunked_part(random_bytes(SIZE, seed));
        let token = &token;
        let app = &app;
        async move { app.upload_as(token, part).await.status().as_u16() }
    });
    let statuses = join_all(uploads).await;

    assert_eq!(statuses, [201; 10], "none refused: together they fit");
    assert_eq!(app.usage("alice").await, (10 * SIZE as i64, 0, 0));
    app.assert_consistent().await;
}

#[tokio::test]
async fn an_empty_body_with_a_quota_is_a_400_not_a_500() {
    let app = spawn_with_quota(MIB).await;
    let token = app.user_with_token("alice").await;
    for path in ["/upload", "/files"] {
        let response = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "multipart/form-data; boundary=B")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let problem = crate::helpers::problem(response).await;
        assert!(
            ["malformed_multipart", "missing_file"].contains(&problem["code"].as_str().unwrap()),
            "{problem}"
        );
    }
    assert_eq!(app.usage("alice").await, (0, 0, 0));
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn small_uploads_of_two_users_committed_together_each_count_for_their_owner() {
    let app = spawn_with_quota(MIB).await;
    let tokens = [
        app.user_with_token("ada").await,
        app.user_with_token("bob").await,
    ];
    // At once: their rows are committed in groups (files::committer), each with its owner,
    // its usage and its settled reservation.
    let sizes: Vec<usize> = (0..24).map(|i| 1000 + 37 * i).collect();
    let uploads = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| app.upload_as(&tokens[i % 2], sized(random_bytes(*size, i as u64))));
    for answer in join_all(uploads).await {
        assert_eq!(answer.status(), 201);
    }

    for (user, token) in tokens.iter().enumerate() {
        let expected: usize = sizes.iter().skip(user).step_by(2).sum();
        let me: serde_json::Value = app.get_as(token, "/me").await.json().await.unwrap();
        assert_eq!(me["used_bytes"], expected, "user {user}");
        let page: serde_json::Value = app.get_as(token, "/files").await.json().await.unwrap();
        assert_eq!(page["files"].as_array().unwrap().len(), 12, "user {user}");
    }
    assert_eq!(app.assert_consistent().await.len(), 24);
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM quota_reservations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(held, 0, "every reservation settled by its commit");
}

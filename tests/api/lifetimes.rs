//! File lifetimes: `PATCH /files/{id}` gives a file an `expires_at`; past it the file is gone at
//! once for every reader, and the sweep deletes it as `DELETE` would (row, bytes, share links,
//! quota), each file once whichever instances sweep.

use futures_util::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::helpers::{
    NOT_INLINE, TestApp, assert_invalid_field, assert_problem, assert_refuses_what_is_not_json,
    file_part, random_bytes, spawn_app_with,
};

fn settings(s: &mut intake::base::configuration::Settings) {
    s.auth.enabled = true;
    s.auth.default_quota_bytes = 100_000_000;
}

async fn stored(app: &TestApp, token: &str, bytes: Vec<u8>) -> String {
    let response = app
        .upload_as(token, file_part("brief.bin", bytes, None))
        .await;
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

async fn change(app: &TestApp, token: &str, file: &str, body: Value) -> Response {
    let request = app.client.patch(app.url(&format!("/files/{file}")));
    request.bearer_auth(token).json(&body).send().await.unwrap()
}

/// Moves file `id`'s end into the past, as time would.
async fn lifetime_over(app: &TestApp, id: &str) {
    sqlx::query("UPDATE files SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id.parse::<uuid::Uuid>().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
}

async fn used_bytes(app: &TestApp, token: &str) -> u64 {
    let me: Value = app.get_as(token, "/me").await.json().await.unwrap();
    me["used_bytes"].as_u64().unwrap()
}

#[tokio::test]
async fn a_file_whose_lifetime_is_over_is_gone_at_once_then_swept_with_its_bytes() {
    let app = spawn_app_with(settings).await;
    let token = app.user_with_token("ada").await;
    let (big, small) = (random_bytes(NOT_INLINE * 2, 51), b"stays".to_vec());
    let brief = stored(&app, &token, big).await;
    let stays = stored(&app, &token, small.clone()).await;

    let changed = change(&app, &token, &brief, json!({"expires_in": "7d"})).await;
    assert_eq!(changed.status(), 200);
    let file: Value = changed.json().await.unwrap();
    let ends = OffsetDateTime::parse(file["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let left = ends - OffsetDateTime::now_utc();
    assert!((6..=7).contains(&left.whole_days()), "{left}");
    let shown: Value = app
        .get_as(&token, &format!("/files/{brief}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["expires_at"], file["expires_at"]);
    let link = app
        .client
        .post(app.url(&format!("/files/{brief}/links")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let link: Value = link.json().await.unwrap();

    lifetime_over(&app, &brief).await;

    // Gone for every reader before any sweep.
    for path in [format!("/files/{brief}"), format!("/files/{brief}/content")] {
        assert_problem(app.get_as(&token, &path).await, 404, "not_found").await;
    }
    let shared = app.get(link["url"].as_str().unwrap()).await;
    assert_problem(shared, 404, "not_found").await;
    let again = change(&app, &token, &brief, json!({"expires_in": "1d"})).await;
    assert_problem(again, 404, "not_found").await;
    let listed: Value = app.get_as(&token, "/files").await.json().await.unwrap();
    let ids: Vec<_> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(stays.as_str())]);

    // The sweep of the next instance to start deletes it: row, bytes, links, quota.
    let _next = app.another_instance(settings).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM files")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM share_links")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(links, 0);
    assert_eq!(app.assert_consistent().await.len(), 1);
    assert_eq!(used_bytes(&app, &token).await, small.len() as u64);
}

#[tokio::test]
async fn files_past_their_lifetime_are_deleted_once_by_instances_sweeping_together() {
    let app = spawn_app_with(settings).await;
    let token = app.user_with_token("ada").await;
    let mut ids = Vec::new();
    for seed in 0..12 {
        let size = if seed % 2 == 0 {
            NOT_INLINE + seed
        } else {
            500
        };
        ids.push(stored(&app, &token, random_bytes(size, seed as u64)).await);
    }
    for id in &ids {
        assert_eq!(
            change(&app, &token, id, json!({"expires_in": "1h"}))
                .await
                .status(),
            200
        );
        lifetime_over(&app, id).await;
    }

    // Three instances start at once, each sweeping before it listens.
    let started = join_all((0..3).map(|_| app.another_instance(settings))).await;

    assert_eq!(started.len(), 3);
    assert_eq!(app.assert_consistent().await.len(), 0);
    // Each file's size came off once: a file deleted twice would leave the usage below 0.
    assert_eq!(used_bytes(&app, &token).await, 0);
}

#[tokio::test]
async fn a_lifetime_is_checked_against_the_bound_and_only_the_owner_sets_it() {
    let app = spawn_app_with(|s| {
        settings(s);
        s.upload.max_lifetime_secs = 30 * 86_400;
    })
    .await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    let file = stored(&app, &ada, b"ada's".to_vec()).await;

    for (body, field) in [
        (json!({"expires_in": "31d"}), "expires_in"),
        (json!({"expires_in": null}), "expires_in"),
        (json!({"expires_in": "soon"}), "expires_in"),
        (json!({"expires_in": 7}), "expires_in"),
        (json!({}), "expires_in"),
        (json!({"expires_in": "1d", "owner": "bob"}), "owner"),
        (json!([]), "object"),
    ] {
        let refused = change(&app, &ada, &file, body.clone()).await;
        assert_invalid_field(refused, field, &body).await;
    }
    let url = app.url(&format!("/files/{file}"));
    assert_refuses_what_is_not_json(app.client.patch(url).bearer_auth(&ada)).await;
    let others = change(&app, &bob, &file, json!({"expires_in": "1d"})).await;
    assert_problem(others, 404, "not_found").await;

    // The refusals changed nothing (under a bound, an upload that names no lifetime gets the
    // bound's); within the bound it is set.
    let shown: Value = app
        .get_as(&ada, &format!("/files/{file}"))
        .await
        .json()
        .await
        .unwrap();
    let at = |key: &str| OffsetDateTime::parse(shown[key].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(
        at("expires_at") - at("created_at"),
        time::Duration::days(30)
    );
    assert_eq!(
        change(&app, &ada, &file, json!({"expires_in": "30d"}))
            .await
            .status(),
        200
    );
}

use std::collections::BTreeSet;

use reqwest::multipart::Form;
use uuid::Uuid;

use crate::helpers::{
    NOT_INLINE, TestApp, assert_problem, file_part, random_bytes, sha256_hex, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn a_batch_of_three_is_stored_together() {
    let app = spawn_app().await;
    // In Postgres and in storage: both sides of `storage.inline_max_bytes`.
    let contents: Vec<Vec<u8>> = [10_000, NOT_INLINE, 3 * NOT_INLINE]
        .into_iter()
        .enumerate()
        .map(|(i, size)| random_bytes(size, i as u64))
        .collect();
    let form = contents
        .iter()
        .enumerate()
        .fold(Form::new().text("note", "hi"), |form, (i, c)| {
            form.part(
                format!("f{i}"),
                file_part(&format!("{i}.bin"), c.clone(), None),
            )
        });

    let response = app.upload_batch(form).await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for (file, content) in files.iter().zip(&contents) {
        assert_eq!(file["sha256"], sha256_hex(content));
        assert_eq!(file["size"], content.len());
    }
    assert_eq!(app.assert_consistent().await.len(), 3);
    assert_eq!(app.object_ids().await.len(), 2);
}

#[tokio::test]
async fn a_batch_with_one_oversize_part_keeps_nothing() {
    // Parts before the refused one on both sides of `storage.inline_max_bytes`: one kept in
    // Postgres, one already written as an object, and both rolled back.
    let app = spawn_app_with(|s| s.upload.max_file_bytes = 300_000).await;
    let form = Form::new()
        .part("a", file_part("a.bin", random_bytes(50_000, 1), None))
        .part("b", file_part("b.bin", random_bytes(200_000, 2), None))
        .part("c", file_part("c.bin", random_bytes(500_000, 3), None));

    assert_problem(app.upload_batch(form).await, 413, "file_too_large").await;
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_batch_over_max_files_is_refused_and_keeps_nothing() {
    let app = spawn_app_with(|s| s.upload.max_files = 3).await;
    let form = (0..4).fold(Form::new(), |form, i| {
        form.part(
            format!("f{i}"),
            file_part("x.bin", random_bytes(NOT_INLINE, i), None),
        )
    });
    assert_problem(app.upload_batch(form).await, 413, "too_many_files").await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn plain_fields_do_not_count_toward_max_files() {
    let app = spawn_app_with(|s| s.upload.max_files = 2).await;
    let form = (0..5).fold(Form::new(), |form, i| form.text(format!("note{i}"), "x"));
    let form = (0..2).fold(form, |form, i| {
        form.part(
            format!("f{i}"),
            file_part("x.bin", random_bytes(100, i), None),
        )
    });
    let response = app.upload_batch(form).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.assert_consistent().await.len(), 2);
}

#[tokio::test]
async fn metadata_is_the_file_object_and_unknown_ids_are_404() {
    let app = spawn_app().await;
    let created: serde_json::Value = app
        .upload_file("m.txt", b"meta".to_vec(), Some("text/plain"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    let fetched: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(fetched, created);

    let unknown = Uuid::now_v7();
    assert_problem(
        app.get(&format!("/files/{unknown}")).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/files/{unknown}/content")).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(app.get("/files/not-a-uuid").await, 404, "not_found").await;
}

#[tokio::test]
async fn delete_removes_the_row_and_the_object() {
    let app = spawn_app().await;
    // Both sides of `storage.inline_max_bytes`: bytes in Postgres, and an object in storage.
    let mut uploaded = Vec::new();
    for (name, size) in [
        ("keep", 10),
        ("keep.big", NOT_INLINE),
        ("gone", 10),
        ("gone.big", 2 * NOT_INLINE),
    ] {
        let body: serde_json::Value = app
            .upload_file(name, random_bytes(size, size as u64), None)
            .await
            .json()
            .await
            .unwrap();
        uploaded.push(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let [keep, keep_big, gone, gone_big] = uploaded[..] else {
        unreachable!()
    };
    assert_eq!(app.object_ids().await, BTreeSet::from([keep_big, gone_big]));

    let delete = |id: Uuid| app.client.delete(app.url(&format!("/files/{id}"))).send();
    for id in [gone, gone_big] {
        assert_eq!(delete(id).await.unwrap().status(), 204);
        assert_problem(app.get(&format!("/files/{id}")).await, 404, "not_found").await;
        assert_problem(delete(id).await.unwrap(), 404, "not_found").await;
    }
    assert_eq!(
        app.assert_consistent().await,
        BTreeSet::from([keep, keep_big])
    );
    assert_eq!(app.object_ids().await, BTreeSet::from([keep_big]));
}

async fn page(app: &TestApp, limit: usize, cursor: Option<&str>) -> (Vec<String>, Option<String>) {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    let response = app
        .client
        .get(app.url("/files"))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let ids = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["next_cursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn listing_is_newest_first_and_stable_across_pages() {
    let app = spawn_app().await;
    let mut uploaded = Vec::new();
    for i in 0..7 {
        let body: serde_json::Value = app
            .upload_file(&format!("{i}"), vec![i], None)
            .await
            .json()
            .await
            .unwrap();
        uploaded.push(body["id"].as_str().unwrap().to_owned());
    }

    let (first, cursor) = page(&app, 3, None).await;
    // A file arriving between pages must not shift or repeat what the next pages show.
    app.upload_file("late", b"late".to_vec(), None).await;
    let (second, cursor) = page(&app, 3, cursor.as_deref()).await;
    let (third, cursor) = page(&app, 3, cursor.as_deref()).await;

    assert_eq!(cursor, None);
    let seen: Vec<String> = [first, second, third].concat();
    let newest_first: Vec<String> = uploaded.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    let id = Uuid::now_v7().simple();
    let out_of_range = [
        format!("cursor=-300000000000000000_{id}"),
        format!("cursor=-1_{id}"),
        format!("cursor=253402300800000000_{id}"),
    ];
    let queries = ["limit=0", "limit=100000", "limit=abc", "cursor=garbage"]
        .map(String::from)
        .into_iter()
        .chain(out_of_range);
    for query in queries {
        let response = app.get(&format!("/files?{query}")).await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

use crate::helpers::{NOT_INLINE, TestApp, assert_problem, random_bytes, sha256_hex, spawn_app};
use uuid::Uuid;

async fn uploaded(app: &TestApp, name: &str, bytes: &[u8], content_type: Option<&str>) -> String {
    let response = app.upload_file(name, bytes.to_vec(), content_type).await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_download_returns_exactly_the_uploaded_bytes_with_validators() {
    let app = spawn_app().await;
    let bytes = random_bytes(3 * 1024 * 1024 + 5, 10);
    let url = uploaded(&app, "data.bin", &bytes, Some("application/x-custom")).await;

    let response = app.get(&url).await;

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert_eq!(headers["content-type"], "application/x-custom");
    assert_eq!(
        headers["etag"],
        format!("\"{}\"", sha256_hex(&bytes)).as_str()
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert!(headers.contains_key("last-modified"));
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256_hex(&body), sha256_hex(&bytes));
    assert_eq!(body.len(), bytes.len());
}

#[tokio::test]
async fn content_disposition_is_an_attachment_with_an_encoded_utf8_name() {
    let app = spawn_app().await;
    let url = uploaded(
        &app,
        "résumé \"final\".html",
        b"<script>alert(1)</script>",
        Some("text/html"),
    )
    .await;

    let response = app.get(&url).await;

    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.html"),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename=\"r_sum_ _final_.html\""),
        "{disposition}"
    );
}

#[tokio::test]
async fn a_single_range_is_206_and_an_unsatisfiable_one_is_416() {
    let app = spawn_app().await;
    let bytes = random_bytes(1000, 11);
    let url = uploaded(&app, "r.bin", &bytes, None).await;

    let partial = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["content-range"], "bytes 100-199/1000");
    assert_eq!(partial.headers()["content-length"], "100");
    assert_eq!(partial.bytes().await.unwrap(), bytes[100..200]);

    let suffix = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), 206);
    assert_eq!(suffix.bytes().await.unwrap(), bytes[990..]);

    let open = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=995-")
        .send()
        .await
        .unwrap();
    assert_eq!(open.bytes().await.unwrap(), bytes[995..]);

    let beyond = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.headers()["content-range"], "bytes */1000");
    assert_problem(beyond, 416, "invalid_request").await;
}

#[tokio::test]
async fn if_range_with_a_stale_etag_gets_the_whole_file() {
    let app = spawn_app().await;
    let bytes = random_bytes(500, 12);
    let url = uploaded(&app, "r.bin", &bytes, None).await;
    let response = app
        .client
        .get(app.url(&url))
        .header("range", "bytes=0-9")
        .header("if-range", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 500);
}

#[tokio::test]
async fn a_matching_etag_is_304_without_a_body() {
    let app = spawn_app().await;
    let bytes = random_bytes(2048, 13);
    let url = uploaded(&app, "e.bin", &bytes, None).await;
    let etag = format!("\"{}\"", sha256_hex(&bytes));

    let cached = app
        .client
        .get(app.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["etag"], etag.as_str());
    assert!(cached.bytes().await.unwrap().is_empty());

    let stale = app
        .client
        .get(app.url(&url))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
}

#[tokio::test]
async fn head_gives_the_headers_without_the_body() {
    let app = spawn_app().await;
    let bytes = random_bytes(4096, 14);
    let url = uploaded(&app, "h.bin", &bytes, None).await;

    let response = app.client.head(app.url(&url)).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "4096");
    assert_eq!(
        response.headers()["etag"],
        format!("\"{}\"", sha256_hex(&bytes)).as_str()
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_empty_file_downloads_as_empty() {
    let app = spawn_app().await;
    let url = uploaded(&app, "empty.txt", b"", Some("text/plain")).await;
    let response = app.get(&url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "0");
    assert_eq!(
        response.headers()["etag"],
        format!("\"{}\"", sha256_hex(b"")).as_str()
    );
}

#[tokio::test]
async fn an_if_range_that_cannot_be_parsed_gets_the_whole_file() {
    let app = spawn_app().await;
    let bytes = random_bytes(500, 13);
    let url = uploaded(&app, "r.bin", &bytes, None).await;
    for if_range in ["", "not a validator", "W/\"weak\""] {
        let response = app
            .client
            .get(app.url(&url))
            .header("range", "bytes=0-9")
            .header("if-range", if_range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{if_range:?}");
        assert_eq!(response.bytes().await.unwrap().len(), 500);
    }
}

#[tokio::test]
async fn a_download_whose_object_was_just_taken_by_a_delete_is_404() {
    let app = spawn_app().await;
    let url = uploaded(&app, "gone.bin", &random_bytes(NOT_INLINE, 14), None).await;
    // What a delete does first: the object leaves its place before the row goes.
    for object in app.object_ids().await {
        app.remove_object(object).await;
    }
    assert_problem(app.get(&url).await, 404, "not_found").await;
}

#[tokio::test]
async fn downloads_racing_deletes_get_the_whole_file_or_404() {
    let app = spawn_app().await;
    for round in 0..20 {
        let bytes = random_bytes(256 * 1024, round);
        let url = uploaded(&app, "race.bin", &bytes, None).await;
        let id = url.split('/').nth(2).unwrap().to_owned();
        let downloads = (0..4).map(|_| async {
            let response = app.get(&url).await;
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap())
        });
        let delete = app.client.delete(app.url(&format!("/files/{id}"))).send();
        let (answers, deleted) = tokio::join!(futures_util::future::join_all(downloads), delete);
        assert_eq!(deleted.unwrap().status(), 204);
        for (status, body) in answers {
            match status {
                200 => assert_eq!(sha256_hex(&body), sha256_hex(&bytes)),
                404 => {}
                other => panic!("a download racing a delete answered {other}"),
            }
        }
    }
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn small_files_live_in_postgres_with_their_row_and_are_served_whole_or_by_range() {
    let app = spawn_app().await;
    // `storage.inline_max_bytes` is 65536 by default: the first fits, the second does not.
    let small = random_bytes(65536, 21);
    let small_url = uploaded(&app, "small.bin", &small, None).await;
    let large_url = uploaded(&app, "large.bin", &random_bytes(65537, 22), None).await;
    let id_of = |url: &str| Uuid::parse_str(url.split('/').nth(2).unwrap()).unwrap();

    assert_eq!(app.assert_consistent().await.len(), 2);
    assert_eq!(
        app.object_ids().await.into_iter().collect::<Vec<_>>(),
        [id_of(&large_url)],
        "only the larger file is in the storage backend"
    );
    let whole = app.get(&small_url).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), small);
    let range = app
        .client
        .get(app.url(&small_url))
        .header("Range", "bytes=65000-")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.unwrap(), small[65000..]);

    let deleted = app
        .client
        .delete(app.url(&format!("/files/{}", id_of(&small_url))))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_problem(app.get(&small_url).await, 404, "not_found").await;
    assert_eq!(
        app.assert_consistent().await.len(),
        1,
        "its bytes went with its row"
    );
}

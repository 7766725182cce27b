//! tus concatenation: partial uploads sent at once, then a final upload that makes them one
//! file, with its SHA-256, its quota and nothing left of the partials; every final upload that
//! cannot be made refused with the partials kept as they were. On disk, and in a bucket under
//! `INTAKE_TEST_S3`. (tus-js-client's `parallelUploads`: `tus_clients`; how a bucket assembles
//! the file: `s3::concat`.)

use futures_util::future::join_all;
use reqwest::{Method, Response};

use uuid::Uuid;

use super::{Tus, assert_nothing_resumable_left, header, id_of, metadata};
use crate::helpers::{TestApp, assert_problem, random_bytes, sha256_hex, spawn_app_with};

/// With auth and a quota, so that what the partials hold is counted.
async fn app(quota: u64) -> TestApp {
    spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = quota;
    })
    .await
}

pub async fn create_partial(tus: &Tus<'_>, length: usize) -> String {
    let created = tus
        .request(Method::POST, "/tus/")
        .header("Upload-Concat", "partial")
        .header("Upload-Length", length)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    header(&created, "location")
}

pub async fn create_final(tus: &Tus<'_>, concat: &str, filename: &str) -> Response {
    tus.request(Method::POST, "/tus/")
        .header("Upload-Concat", concat)
        .header("Upload-Metadata", metadata(filename))
        .send()
        .await
        .unwrap()
}

async fn file_object(app: &TestApp, token: &str, id: Uuid) -> serde_json::Value {
    let file = app.get_as(token, &format!("/files/{id}")).await;
    assert_eq!(file.status(), 200);
    file.json().await.unwrap()
}

async fn used_bytes(app: &TestApp, token: &str) -> u64 {
    let me: serde_json::Value = app.get_as(token, "/me").await.json().await.unwrap();
    me["used_bytes"].as_u64().unwrap()
}

#[tokio::test]
async fn partial_uploads_sent_at_once_become_one_file_with_the_sha256_of_the_whole() {
    let app = app(10_000_000).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    // Both sides of the inline threshold, and a piece of none.
    let pieces = [
        random_bytes(300_000, 1),
        random_bytes(10, 2),
        Vec::new(),
        random_bytes(70_000, 3),
    ];
    let mut paths = Vec::new();
    for piece in &pieces {
        paths.push(create_partial(&tus, piece.len()).await);
    }

    let sent = join_all(
        paths
            .iter()
            .zip(&pieces)
            .filter(|(_, p)| !p.is_empty())
            .map(|(path, piece)| tus.patch(path, 0, piece.clone())),
    )
    .await;

    assert!(sent.iter().all(|answer| answer.status() == 204), "{sent:?}");
    // Whole, a partial upload stays an upload: it says what it is, and is no file.
    let head = tus.head(&paths[0]).await;
    assert_eq!(header(&head, "upload-concat"), "partial");
    assert_eq!(header(&head, "upload-offset"), "300000");
    assert_eq!(
        app.get_as(&token, &format!("/files/{}", id_of(&paths[0])))
            .await
            .status(),
        404
    );

    // The final upload names them in order, by path or by whole URL.
    let concat = format!(
        "final;{} {} {} {}",
        paths[0],
        app.url(&paths[1]),
        paths[2],
        paths[3]
    );
    let made = create_final(&tus, &concat, "whole.bin").await;

    assert_eq!(made.status(), 201, "{:?}", made.text().await);
    let whole = pieces.concat();
    assert_eq!(header(&made, "upload-offset"), whole.len().to_string());
    let id = id_of(&header(&made, "location"));
    assert_eq!(header(&made, "content-location"), format!("/files/{id}"));
    let file = file_object(&app, &token, id).await;
    assert_eq!(file["sha256"], sha256_hex(&whole));
    assert_eq!(file["size"], whole.len());
    assert_eq!(file["filename"], "whole.bin");
    let content = app.get_as(&token, &format!("/files/{id}/content")).await;
    assert_eq!(content.bytes().await.unwrap(), whole);
    for path in &paths {
        assert_eq!(tus.head(path).await.status(), 404, "{path} is gone");
    }
    assert_nothing_resumable_left(&app).await;
    assert_eq!(used_bytes(&app, &token).await, whole.len() as u64);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_final_upload_that_cannot_be_made_is_refused_and_leaves_the_partials_as_they_were() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.upload.max_file_bytes = 250_000;
    })
    .await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let (first, second) = (random_bytes(200_000, 4), random_bytes(100_000, 5));
    let a = create_partial(&tus, first.len()).await;
    let b = create_partial(&tus, second.len()).await;
    assert_eq!(tus.patch(&a, 0, first.clone()).await.status(), 204);
    assert_eq!(
        tus.patch(&b, 0, second[..50_000].to_vec()).await.status(),
        204
    );
    let plain = tus.created(10, "plain.bin").await;
    let other = app.user_with_token("bob").await;
    let theirs = create_partial(&Tus::of(&app).with_token(&other), 10).await;

    let refusals = [
        (
            format!("final;{a} {b}"),
            400,
            "invalid_request",
            "has 50000 of its 100000 bytes",
        ),
        (
            format!("final;{a} {plain}"),
            400,
            "invalid_request",
            "is not a partial upload",
        ),
        (
            format!("final;{a} {a}"),
            400,
            "invalid_request",
            "each partial upload once",
        ),
        (
            format!("final;{a} {theirs}"),
            404,
            "not_found",
            "upload not found",
        ),
        ("final;".to_owned(), 400, "invalid_request", "1 to 64"),
        (
            "final;/files/x".to_owned(),
            400,
            "invalid_request",
            "Upload-Concat",
        ),
        ("whole".to_owned(), 400, "invalid_request", "Upload-Concat"),
    ];
    for (concat, status, code, says) in refusals {
        let refused = create_final(&tus, &concat, "x.bin").await;
        let body = assert_problem(refused, status, code).await;
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{concat}: {body}"
        );
    }
    let with_length = tus
        .request(Method::POST, "/tus/")
        .header("Upload-Concat", format!("final;{a}"))
        .header("Upload-Length", 200_000)
        .send()
        .await
        .unwrap();
    assert_problem(with_length, 400, "invalid_request").await;

    // Finished, the second is whole: together they are over the limit, which only the
    // concatenation can tell.
    assert_eq!(
        tus.patch(&b, 50_000, second[50_000..].to_vec())
            .await
            .status(),
        204
    );
    let over = create_final(&tus, &format!("final;{a} {b}"), "x.bin").await;
    assert_problem(over, 413, "file_too_large").await;

    // Every refusal gave the leases back and kept every byte: each partial still works.
    assert_eq!(tus.offset(&a).await, 200_000);
    assert_eq!(tus.offset(&b).await, 100_000);
    let one = create_final(&tus, &format!("final;{b}"), "b.bin").await;
    assert_eq!(one.status(), 201);
    let file = file_object(&app, &token, id_of(&header(&one, "location"))).await;
    assert_eq!(file["sha256"], sha256_hex(&second));
    assert_eq!(tus.delete(&a).await.status(), 204);
    assert_eq!(tus.delete(&plain).await.status(), 204);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn the_content_type_is_the_concatenations_and_the_allow_list_applies_to_it() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.upload.allowed_content_types = vec!["image/png".to_owned()];
    })
    .await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    // A PNG's signature in the first piece; the second alone would be refused.
    let png = [
        &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..],
        &random_bytes(80_000, 6),
    ]
    .concat();
    let (head, tail) = png.split_at(40_000);
    let paths = [
        create_partial(&tus, head.len()).await,
        create_partial(&tus, tail.len()).await,
    ];
    assert_eq!(tus.patch(&paths[0], 0, head.to_vec()).await.status(), 204);
    assert_eq!(tus.patch(&paths[1], 0, tail.to_vec()).await.status(), 204);

    // In the wrong order, the file does not start as a PNG: refused, nothing kept.
    let wrong = create_final(&tus, &format!("final;{} {}", paths[1], paths[0]), "x.png").await;
    assert_problem(wrong, 415, "unsupported_media_type").await;
    let made = create_final(&tus, &format!("final;{} {}", paths[0], paths[1]), "x.png").await;

    assert_eq!(made.status(), 201);
    let file = file_object(&app, &token, id_of(&header(&made, "location"))).await;
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["sha256"], sha256_hex(&png));
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn options_announce_concatenation() {
    let app = app(0).await;
    let options = Tus::of(&app)
        .request(Method::OPTIONS, "/tus/")
        .send()
        .await
        .unwrap();
    let extensions = header(&options, "tus-extension");
    assert!(
        extensions.split(',').any(|e| e == "concatenation"),
        "{extensions}"
    );
}

//! The IETF resumable-upload draft under `/resumable/`, spoken as its examples do: creation
//! with `Upload-Complete`, offset retrieval, appends, cancellation, and its refusals.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::{
    helpers::{TestApp, assert_problem, cut_request, random_bytes, sha256_hex, spawn_app},
    tus::assert_nothing_resumable_left,
};

const PARTIAL: &str = "application/partial-upload";

fn request(app: &TestApp, method: Method, path: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("Upload-Draft-Interop-Version", "8")
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers()[name].to_str().unwrap()
}

fn append(app: &TestApp, path: &str, offset: usize, complete: bool, body: &[u8]) -> RequestBuilder {
    request(app, Method::PATCH, path)
        .header("Content-Type", PARTIAL)
        .header("Upload-Offset", offset)
        .header("Upload-Complete", if complete { "?1" } else { "?0" })
        .body(body.to_vec())
}

/// Creates an upload of `length` bytes without content; its path.
async fn created(app: &TestApp, length: usize) -> String {
    let response = request(app, Method::POST, "/resumable/")
        .header("Upload-Complete", "?0")
        .header("Upload-Length", length)
        .header("Content-Disposition", r#"inline; filename="draft.bin""#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "upload-complete"), "?0");
    assert!(header(&response, "upload-limit").starts_with("max-size="));
    header(&response, "location").to_owned()
}

#[tokio::test]
async fn an_upload_in_parts_becomes_a_file_only_when_the_client_says_it_is_whole() {
    let app = spawn_app().await;
    let bytes = random_bytes(300_000, 8);
    let path = created(&app, bytes.len()).await;
    let (first, rest) = bytes.split_at(100_000);

    let appended = append(&app, &path, 0, false, first).send().await.unwrap();
    assert_eq!(appended.status(), 204);
    assert_eq!(header(&appended, "upload-offset"), "100000");
    let retrieved = request(&app, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(header(&retrieved, "upload-offset"), "100000");
    assert_eq!(header(&retrieved, "upload-complete"), "?0");
    assert_eq!(header(&retrieved, "upload-length"), "300000");
    assert_eq!(header(&retrieved, "cache-control"), "no-store");

    // At its length but not said to be whole: still an upload.
    let at_length = append(&app, &path, 100_000, false, rest)
        .send()
        .await
        .unwrap();
    assert_eq!(at_length.status(), 204);
    let retrieved = request(&app, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(header(&retrieved, "upload-complete"), "?0");

    let done = append(&app, &path, 300_000, true, b"")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(header(&done, "upload-complete"), "?1");
    let file: Value = done.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["filename"], "draft.bin");
    let retrieved = request(&app, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(header(&retrieved, "upload-complete"), "?1");
    assert_eq!(
        header(&retrieved, "content-location"),
        format!("/files/{}", file["id"].as_str().unwrap())
    );
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_whole_file_in_the_creation_is_the_file_at_once() {
    let app = spawn_app().await;
    let bytes = random_bytes(50_000, 9);
    let response = request(&app, Method::POST, "/resumable/")
        .header("Upload-Complete", "?1")
        .header("Content-Type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "location").starts_with("/files/"));
    let file: Value = response.json().await.unwrap();
    assert_eq!(file["size"], 50_000);
    app.assert_downloads(
        file["id"].as_str().unwrap().parse().unwrap(),
        &sha256_hex(&bytes),
    )
    .await;
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn bad_requests_are_refused_in_the_drafts_terms_and_keep_what_was_stored() {
    let app = spawn_app().await;
    let plain = request(&app, Method::POST, "/resumable/")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(plain, 400, "invalid_request").await;
    let old = app
        .client
        .post(app.url("/resumable/"))
        .header("Upload-Draft-Interop-Version", "5")
        .header("Upload-Complete", "?1")
        .send()
        .await
        .unwrap();
    assert_problem(old, 400, "invalid_request").await;

    let path = created(&app, 10).await;
    assert_eq!(
        append(&app, &path, 0, false, b"01234")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let wrong_type = request(&app, Method::PATCH, &path)
        .header("Upload-Offset", 5)
        .header("Upload-Complete", "?0")
        .header("Content-Type", "application/octet-stream")
        .body("56789")
        .send()
        .await
        .unwrap();
    assert_problem(wrong_type, 415, "not_partial_upload").await;
    let mismatch = append(&app, &path, 3, false, b"56789")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&mismatch, "upload-offset"), "5");
    assert_eq!(header(&mismatch, "upload-complete"), "?0");
    let problem = assert_problem(mismatch, 409, "offset_mismatch").await;
    assert_eq!(problem["expected-offset"], 5);
    assert_eq!(problem["provided-offset"], 3);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#mismatching-upload-offset")
    );
    let short = append(&app, &path, 5, true, b"56").send().await.unwrap();
    let problem = assert_problem(short, 400, "invalid_request").await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("#inconsistent-upload-length")
    );
    let beyond = append(&app, &path, 5, false, b"56789abc")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 413);
    assert!(beyond.headers().contains_key("upload-limit"));

    let retrieved = request(&app, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(
        header(&retrieved, "upload-offset"),
        "5",
        "the refusals kept what was stored"
    );
    let cancelled = request(&app, Method::DELETE, &path).send().await.unwrap();
    assert_eq!(cancelled.status(), 204);
    let gone = request(&app, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn options_tell_the_limits() {
    let app = spawn_app().await;
    let response = request(&app, Method::OPTIONS, "/resumable/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let limit = header(&response, "upload-limit");
    assert!(
        limit.starts_with("max-size=") && limit.contains("max-age="),
        "{limit}"
    );
}

#[tokio::test]
async fn a_patch_cut_mid_body_goes_on_from_another_instance() {
    let first = spawn_app().await;
    let second = first.another_instance(|_| {}).await;
    let bytes = random_bytes(2_000_000, 10);
    let path = created(&first, bytes.len()).await;

    let mut in_flight = first.uploads_in_flight.clone();
    in_flight.borrow_and_update();
    let fields = [
        ("Upload-Draft-Interop-Version", "8"),
        ("Upload-Offset", "0"),
        ("Upload-Complete", "?1"),
        ("Content-Type", PARTIAL),
    ];
    let start = format!("PATCH {path}");
    cut_request(
        first.host(),
        &start,
        &fields,
        bytes.len(),
        &bytes[..900_000],
    )
    .await;
    // The PATCH counts as in flight from its lease until its progress is recorded.
    in_flight.changed().await.unwrap();
    in_flight.wait_for(|n| *n == 0).await.unwrap();

    // What arrived is kept (but for what actix-web had read and not handed over), and the
    // other instance knows it.
    let retrieved = request(&second, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(header(&retrieved, "upload-complete"), "?0");
    let offset: usize = header(&retrieved, "upload-offset").parse().unwrap();
    assert!(
        (900_000 - 128 * 1024..=900_000).contains(&offset),
        "{offset}"
    );
    let done = append(&second, &path, offset, true, &bytes[offset..])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let file: Value = done.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    first
        .assert_downloads(
            file["id"].as_str().unwrap().parse().unwrap(),
            &sha256_hex(&bytes),
        )
        .await;
    assert_nothing_resumable_left(&first).await;
}

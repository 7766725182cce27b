//! A declared digest (RFC 9530 `Repr-Digest` on a file part) is checked against the bytes the
//! server received: a mismatch keeps nothing.

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::{
    header::{HeaderMap, HeaderValue},
    multipart::{Form, Part},
};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, assert_problem, file_part, random_bytes, sha256_hex, spawn_app};

fn with_digest(name: &str, bytes: Vec<u8>, repr_digest: &str) -> Part {
    let mut headers = HeaderMap::new();
    headers.insert("repr-digest", HeaderValue::from_str(repr_digest).unwrap());
    file_part(name, bytes, None).headers(headers)
}

fn sha256_field(bytes: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(bytes)))
}

async fn upload(app: &TestApp, part: Part) -> reqwest::Response {
    app.upload(Form::new().part("file", part)).await
}

#[tokio::test]
async fn a_declared_sha256_that_matches_is_stored() {
    let app = spawn_app().await;
    let bytes = random_bytes(3 * 1024 * 1024, 41);
    let field = format!("sha-512=:AAAA:, {}", sha256_field(&bytes));

    let response = upload(&app, with_digest("ok.bin", bytes.clone(), &field)).await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_declared_sha256_that_differs_is_422_and_keeps_nothing() {
    let app = spawn_app().await;
    let bytes = random_bytes(3 * 1024 * 1024, 42);
    let other = sha256_field(b"something else");

    let response = upload(&app, with_digest("bad.bin", bytes, &other)).await;

    let problem = assert_problem(response, 422, "checksum_mismatch").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("bad.bin"),
        "{problem}"
    );
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn one_mismatching_part_of_a_batch_keeps_none_of_it() {
    let app = spawn_app().await;
    let good = random_bytes(200_000, 43);
    let form = Form::new()
        .part(
            "a",
            with_digest("a.bin", good.clone(), &sha256_field(&good)),
        )
        .part(
            "b",
            with_digest("b.bin", random_bytes(1000, 44), &sha256_field(&good)),
        );

    let response = app.upload_batch(form).await;

    assert_problem(response, 422, "checksum_mismatch").await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_malformed_repr_digest_is_400_and_other_algorithms_alone_are_not_checked() {
    let app = spawn_app().await;
    let malformed = upload(&app, with_digest("m.bin", b"m".to_vec(), "sha-256=abc")).await;
    assert_problem(malformed, 400, "invalid_request").await;

    let unchecked = upload(&app, with_digest("u.bin", b"u".to_vec(), "sha-512=:AAAA:")).await;
    assert_eq!(unchecked.status(), 201);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

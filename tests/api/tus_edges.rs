//! The edges of tus that clients reach without asking: an empty file, a client that cannot send
//! `PATCH`, a client that wants its upload split into parallel parts.

use crate::{
    helpers::{assert_problem, random_bytes, sha256_hex, spawn_app},
    tus::{OCTETS, Tus, assert_nothing_resumable_left, header, id_of},
};

#[tokio::test]
async fn an_empty_upload_is_a_file_at_once() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);

    // tus clients send no PATCH for an empty file: the creation must make it.
    let created = tus.create(0, "empty.txt").await;
    assert_eq!(created.status(), 201);
    let path = header(&created, "location");
    let id = id_of(&path);
    assert_eq!(header(&created, "content-location"), format!("/files/{id}"));
    assert_eq!(header(&created, "upload-offset"), "0");
    let head = tus.head(&path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-length"), "0");

    let file: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(file["size"], 0);
    assert_eq!(file["filename"], "empty.txt");
    assert_eq!(file["sha256"], sha256_hex(b""));
    let content = app.get(&format!("/files/{id}/content")).await;
    assert_eq!(content.status(), 200);
    assert!(content.bytes().await.unwrap().is_empty());
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn an_empty_upload_whose_creation_brings_bytes_is_413_and_keeps_nothing() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);

    let refused = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 0)
        .header("Content-Type", OCTETS)
        .body("x")
        .send()
        .await
        .unwrap();

    assert_problem(refused, 413, "length_exceeded").await;
    assert!(app.row_ids().await.is_empty());
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_post_that_overrides_its_method_patches_and_terminates() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(10, 3);
    let path = tus.created(bytes.len() as u64, "override.bin").await;

    let overridden = |method: &str| {
        tus.request(reqwest::Method::POST, &path)
            .header("X-HTTP-Method-Override", method)
    };
    let patched = overridden("PATCH")
        .header("Upload-Offset", 0)
        .header("Content-Type", OCTETS)
        .body(bytes[..4].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    assert_eq!(header(&patched, "upload-offset"), "4");
    assert_eq!(tus.offset(&path).await, 4);

    let terminated = overridden("DELETE").send().await.unwrap();
    assert_eq!(terminated.status(), 204);
    assert_eq!(tus.head(&path).await.status(), 404);
    assert_nothing_resumable_left(&app).await;

    // Without the header, a POST on an upload is not a method it has.
    let plain = tus
        .request(reqwest::Method::POST, &path)
        .send()
        .await
        .unwrap();
    assert_problem(plain, 405, "invalid_request").await;
}

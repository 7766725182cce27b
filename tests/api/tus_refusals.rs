//! What a refused `PATCH` leaves behind: no quota held for bytes it did not keep, and never a
//! whole upload made of a body that went past its length.

use base64::Engine;
use reqwest::multipart::Part;
use sha2::{Digest, Sha256};

use crate::{
    helpers::{TestApp, assert_problem, random_bytes, sha256_hex, spawn_app_with},
    tus::{OCTETS, Tus, assert_nothing_resumable_left, header, id_of},
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

async fn with_quota(bytes: u64) -> (TestApp, String) {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = bytes;
    })
    .await;
    let token = app.user_with_token("ada").await;
    (app, token)
}

async fn deferred(tus: &Tus<'_>) -> String {
    let created = tus.create_deferred().await;
    assert_eq!(created.status(), 201);
    header(&created, "location")
}

/// A body sent in 64 KiB chunks, without a `Content-Length`: only the stream can tell its size.
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * KIB).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_patch_refused_for_its_checksum_gives_back_what_it_reserved() {
    let (app, token) = with_quota(1_000_000).await;
    let tus = Tus::of(&app).with_token(&token);
    let path = deferred(&tus).await;
    let wrong = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"));

    let refused = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 0)
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", format!("sha256 {wrong}"))
        .body(chunked(random_bytes(900 * KIB, 1)))
        .send()
        .await
        .unwrap();

    assert_problem(refused, 460, "chunk_checksum_mismatch").await;
    assert_eq!(tus.offset(&path).await, 0);
    let (used, reserved, _) = app.usage("ada").await;
    assert_eq!(
        (used, reserved),
        (0, 0),
        "the refused bytes are still reserved"
    );
    let stored = app
        .upload_as(
            &token,
            Part::bytes(random_bytes(600 * KIB, 2)).file_name("fits.bin"),
        )
        .await;
    assert_eq!(stored.status(), 201);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_patch_refused_as_too_long_keeps_only_what_it_recorded_reserved() {
    let (app, token) = with_quota(4 * MIB as u64).await;
    let tus = Tus::of(&app).with_token(&token);
    let path = deferred(&tus).await;
    assert_eq!(
        tus.patch(&path, 0, random_bytes(100, 3)).await.status(),
        204
    );

    // The length arrives with a body that goes past it, in chunks: refused as it streams.
    let refused = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 100)
        .header("Upload-Length", 200 * KIB + 100)
        .header("Content-Type", OCTETS)
        .body(chunked(random_bytes(900 * KIB, 4)))
        .send()
        .await
        .unwrap();

    assert_problem(refused, 413, "length_exceeded").await;
    assert_eq!(tus.offset(&path).await, 100);
    assert_eq!(app.usage("ada").await.1, 100);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_chunked_patch_past_the_length_never_makes_the_file() {
    let app = spawn_app_with(|s| s.tus.checkpoint_bytes = MIB as u64).await;
    let tus = Tus::of(&app);
    let length = 3 * MIB;
    let bytes = random_bytes(length + 5000, 5);
    let path = tus.created(length as u64, "overrun.bin").await;

    let refused = tus.patch(&path, 0, chunked(bytes.clone())).await;

    assert_problem(refused, 413, "length_exceeded").await;
    // What the checkpoints recorded stays, short of the length: no HEAD makes it a file.
    let kept = tus.offset(&path).await;
    assert!(0 < kept && kept < length as u64, "kept {kept} bytes");
    assert_eq!(tus.offset(&path).await, kept);
    assert!(
        app.row_ids().await.is_empty(),
        "the refused PATCH made a file"
    );

    let rest = bytes[kept as usize..length].to_vec();
    let finished = tus.patch(&path, kept, rest).await;
    assert_eq!(finished.status(), 204);
    let id = id_of(&path);
    assert_eq!(
        header(&finished, "content-location"),
        format!("/files/{id}")
    );
    let file: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes[..length]));
    assert_nothing_resumable_left(&app).await;
}

//! The tus 1.0 protocol through `Tus`: creation, offsets, deferred lengths, checksums, every
//! refusal with its status, and uploads counted against their owner's quota.

use uuid::Uuid;

use super::{OCTETS, Tus, assert_nothing_resumable_left, file_object, header, id_of, metadata};
use crate::helpers::{assert_problem, random_bytes, sha256_hex, spawn_app, spawn_app_with};

#[tokio::test]
async fn options_tells_what_the_server_supports_without_a_token() {
    let app = spawn_app_with(|s| s.auth.enabled = true).await;

    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/tus/"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "tus-version"), "1.0.0");
    assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    assert_eq!(header(&response, "tus-max-size"), "1073741824");
    assert_eq!(header(&response, "tus-checksum-algorithm"), "sha1,sha256");
    let extensions = header(&response, "tus-extension");
    for extension in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    ] {
        assert!(extensions.split(',').any(|e| e == extension), "{extension}");
    }
}

#[tokio::test]
async fn an_upload_in_three_patches_becomes_a_file_with_its_sha256() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 1);
    let path = tus.created(bytes.len() as u64, "../../report.bin").await;
    let head = tus.head(&path).await;
    assert_eq!(header(&head, "upload-offset"), "0");
    assert_eq!(header(&head, "upload-length"), bytes.len().to_string());
    assert_eq!(
        header(&head, "upload-metadata"),
        metadata("../../report.bin")
    );
    assert!(header(&head, "upload-expires").ends_with(" GMT"));
    assert_eq!(header(&head, "cache-control"), "no-store");

    let cuts = [0, 1024 * 1024, 2 * 1024 * 1024 + 5, bytes.len()];
    for window in cuts.windows(2) {
        let response = tus
            .patch(
                &path,
                window[0] as u64,
                bytes[window[0]..window[1]].to_vec(),
            )
            .await;
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, "upload-offset"), window[1].to_string());
        assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    }

    let id = id_of(&path);
    let file = file_object(&app, id).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["size"], bytes.len());
    assert_eq!(
        file["filename"], "report.bin",
        "cleaned as multipart names are"
    );
    app.assert_downloads(id, &sha256_hex(&bytes)).await;
    // A client that missed the last answer learns from HEAD that the upload is a file.
    let head = tus.head(&path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-offset"), bytes.len().to_string());
    assert_eq!(header(&head, "content-location"), format!("/files/{id}"));
    // And a retry of the last PATCH that sends nothing new is answered as it was.
    let retried = tus.patch(&path, bytes.len() as u64, Vec::new()).await;
    assert_eq!(retried.status(), 204);
    assert_eq!(header(&retried, "content-location"), format!("/files/{id}"));
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn creation_with_upload_and_a_length_declared_later() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = b"%PDF-1.7 the first part, and the rest".to_vec();

    let created = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Defer-Length", "1")
        .header("Content-Type", OCTETS)
        .body(bytes[..9].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "upload-offset"), "9");
    let path = header(&created, "location");
    let head = tus.head(&path).await;
    assert_eq!(header(&head, "upload-defer-length"), "1");
    assert!(head.headers().get("upload-length").is_none());

    let last = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 9)
        .header("Upload-Length", bytes.len())
        .header("Content-Type", OCTETS)
        .body(bytes[9..].to_vec())
        .send()
        .await
        .unwrap();

    assert_eq!(last.status(), 204);
    let file = file_object(&app, id_of(&path)).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["filename"], "unnamed");
    assert_eq!(
        file["content_type"], "application/pdf",
        "sniffed from the first bytes"
    );
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn protocol_errors_have_their_statuses_and_change_nothing() {
    let app = spawn_app_with(|s| s.upload.max_file_bytes = 1000).await;
    let tus = Tus::of(&app);
    let path = tus.created(10, "a.txt").await;

    let no_version = app.client.head(app.url(&path)).send().await.unwrap();
    assert_eq!(no_version.status(), 412);
    assert_eq!(header(&no_version, "tus-version"), "1.0.0");
    let old_version = app
        .client
        .patch(app.url(&path))
        .header("Tus-Resumable", "0.2.2")
        .send()
        .await
        .unwrap();
    assert_problem(old_version, 412, "tus_version_unsupported").await;
    let not_octets = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Upload-Offset", 0)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(not_octets, 415, "not_offset_octet_stream").await;
    let no_offset = tus
        .request(reqwest::Method::PATCH, &path)
        .header("Content-Type", OCTETS)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(no_offset, 400, "invalid_request").await;
    assert_problem(tus.patch(&path, 3, "hello").await, 409, "offset_mismatch").await;
    assert_problem(
        tus.patch(&path, 0, "hello world").await,
        413,
        "length_exceeded",
    )
    .await;
    let unknown = format!("/tus/{}", Uuid::now_v7());
    assert_problem(tus.patch(&unknown, 0, "hello").await, 404, "not_found").await;
    assert_eq!(tus.head(&unknown).await.status(), 404);
    assert_problem(tus.delete(&unknown).await, 404, "not_found").await;
    assert_problem(tus.create(1001, "big").await, 413, "file_too_large").await;
    let no_length = tus
        .request(reqwest::Method::POST, "/tus/")
        .send()
        .await
        .unwrap();
    assert_problem(no_length, 400, "invalid_request").await;
    let bad_metadata = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 5)
        .header("Upload-Metadata", "filename not-base64!")
        .send()
        .await
        .unwrap();
    assert_problem(bad_metadata, 400, "invalid_request").await;
    let not_a_number = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", "-5")
        .send()
        .await
        .unwrap();
    assert_problem(not_a_number, 400, "invalid_request").await;

    assert_eq!(tus.offset(&path).await, 0, "nothing was kept");
    assert_eq!(tus.patch(&path, 0, "0123456789").await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_chunk_that_does_not_match_its_checksum_is_discarded() {
    use base64::Engine;
    use sha2::Digest;
    let app = spawn_app().await;
    let tus = Tus::of(&app);
    let bytes = random_bytes(600_000, 2);
    let path = tus.created(bytes.len() as u64, "checked.bin").await;
    let b64 = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    let checked = |offset: u64, chunk: &[u8], checksum: String| {
        tus.request(reqwest::Method::PATCH, &path)
            .header("Upload-Offset", offset)
            .header("Content-Type", OCTETS)
            .header("Upload-Checksum", checksum)
            .body(chunk.to_vec())
            .send()
    };
    let (first, rest) = bytes.split_at(400_000);

    let sha1 = format!("sha1 {}", b64(&sha1::Sha1::digest(first)));
    assert_eq!(checked(0, first, sha1).await.unwrap().status(), 204);
    let wrong = format!("sha256 {}", b64(&sha2::Sha256::digest(first)));
    let refused = checked(400_000, rest, wrong).await.unwrap();
    assert_problem(refused, 460, "chunk_checksum_mismatch").await;
    assert_eq!(tus.offset(&path).await, 400_000, "the chunk was discarded");
    let unknown = checked(400_000, rest, "md5 AAAA".into()).await.unwrap();
    assert_problem(unknown, 400, "invalid_request").await;
    let right = format!("sha256 {}", b64(&sha2::Sha256::digest(rest)));
    assert_eq!(checked(400_000, rest, right).await.unwrap().status(), 204);

    let file = file_object(&app, id_of(&path)).await;
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn uploads_are_their_owners_quota_counts_and_termination_gives_it_back() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 1000;
    })
    .await;
    let ada = app.user_with_token("ada").await;
    let bob = app.user_with_token("bob").await;
    let (tus, other) = (
        Tus::of(&app).with_token(&ada),
        Tus::of(&app).with_token(&bob),
    );
    assert_problem(Tus::of(&app).create(10, "x").await, 401, "unauthorized").await;

    let path = tus.created(600, "mine.bin").await;
    assert_eq!(tus.patch(&path, 0, vec![7u8; 100]).await.status(), 204);
    // Reserved from Upload-Length: a second upload of 600 does not fit.
    assert_problem(tus.create(600, "more").await, 413, "quota_exceeded").await;
    // Another user's upload is as absent as one that never was.
    assert_eq!(other.head(&path).await.status(), 404);
    assert_problem(
        other.patch(&path, 100, vec![1u8; 10]).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(other.delete(&path).await, 404, "not_found").await;

    let terminated = tus.delete(&path).await;
    assert_eq!(terminated.status(), 204);
    assert_eq!(tus.head(&path).await.status(), 404);
    assert_problem(tus.patch(&path, 100, vec![1u8; 10]).await, 404, "not_found").await;
    let again = tus.created(1000, "fits again").await;
    assert_eq!(tus.patch(&again, 0, vec![1u8; 1000]).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_deferred_length_counts_against_the_quota_as_bytes_arrive() {
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.auth.default_quota_bytes = 1_000_000;
    })
    .await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let created = tus.create_deferred().await;
    let path = header(&created, "location");
    assert_eq!(tus.patch(&path, 0, vec![1u8; 900_000]).await.status(), 204);

    let over = tus.patch(&path, 900_000, vec![2u8; 200_000]).await;

    assert_problem(over, 413, "quota_exceeded").await;
    assert_eq!(tus.offset(&path).await, 900_000);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

#[tokio::test]
async fn a_user_with_an_unfinished_upload_is_not_deleted_until_it_is_terminated() {
    use intake::access::auth::store::{StoreError, delete_user};
    let app = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);
    let path = tus.created(10, "unfinished").await;

    let refused = delete_user(&app.pool, "ada").await;

    assert!(
        matches!(refused, Err(StoreError::UserOwnsFiles(_, 1))),
        "{refused:?}"
    );
    assert_eq!(tus.delete(&path).await.status(), 204);
    delete_user(&app.pool, "ada").await.unwrap();
}

#[tokio::test]
async fn a_creation_whose_first_bytes_fail_still_says_where_the_upload_is() {
    let app = spawn_app().await;
    let tus = Tus::of(&app);

    let refused = tus
        .request(reqwest::Method::POST, "/tus/")
        .header("Upload-Length", 10)
        .header("Content-Type", OCTETS)
        .header("Upload-Checksum", "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body("0123456789")
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), 460);
    assert_eq!(
        header(&refused, "tus-resumable"),
        "1.0.0",
        "errors carry it too"
    );
    let path = header(&refused, "location");
    assert_eq!(tus.offset(&path).await, 0);
    assert_eq!(tus.delete(&path).await.status(), 204);
    assert_nothing_resumable_left(&app).await;
}

//! tus concatenation in a bucket: the file's parts copied from the partial uploads inside the
//! bucket (UploadPartCopy), none of their bytes sent again; without part copies
//! (`storage.s3.copy_parts = false`) it is refused and not announced.

use reqwest::Method;

use super::server::{MIB, S3Server, app_on, app_via};
use crate::{
    helpers::{assert_problem, random_bytes, sha256_hex},
    proxy::FaultyProxy,
    tus::{
        Tus, assert_nothing_resumable_left,
        concat::{create_final, create_partial},
        header, id_of,
    },
};

#[tokio::test]
async fn a_concatenation_is_assembled_by_the_bucket_from_the_partial_uploads() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(server.port).await;
    let app = app_via(&server, proxy.port, |_| {}).await;
    let tus = Tus::of(&app);
    // Two pieces of whole parts, copied; one smaller than a part, whose bytes are sent.
    let pieces = [
        random_bytes(5 * MIB, 21),
        random_bytes(10 * MIB, 22),
        random_bytes(300_000, 23),
    ];
    let mut paths = Vec::new();
    for piece in &pieces {
        let path = create_partial(&tus, piece.len()).await;
        assert_eq!(tus.patch(&path, 0, piece.clone()).await.status(), 204);
        paths.push(path);
    }
    let sent_before = proxy.part_sizes().len();

    let made = create_final(&tus, &format!("final;{}", paths.join(" ")), "whole.bin").await;

    assert_eq!(made.status(), 201, "{:?}", made.text().await);
    // The two copies carry no body; only the small piece's bytes went to the bucket again.
    assert_eq!(proxy.part_sizes()[sent_before..], [0, 0, 300_000]);
    let id = id_of(&header(&made, "location"));
    let whole = pieces.concat();
    let file: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&whole));
    assert_eq!(file["size"], whole.len());
    app.assert_downloads(id, &sha256_hex(&whole)).await;
    assert_nothing_resumable_left(&app).await;
    assert_eq!(app.assert_consistent().await.len(), 1);
    // The partials' own objects went with their rows: the file's is all the bucket holds.
    assert_eq!(server.objects("").len(), 1, "{:?}", server.objects(""));
}

#[tokio::test]
async fn without_part_copies_a_bucket_refuses_concatenation_and_does_not_announce_it() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let app = app_on(&server, |s| s.storage.s3.copy_parts = false).await;
    let tus = Tus::of(&app);

    let options = tus.request(Method::OPTIONS, "/tus/").send().await.unwrap();
    let extensions = header(&options, "tus-extension");
    for concat in ["partial", "final;/tus/01a23c00-bf82-72f9-99b5-d2ca5edc4392"] {
        let refused = tus
            .request(Method::POST, "/tus/")
            .header("Upload-Length", 10)
            .header("Upload-Concat", concat)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(refused, 400, "invalid_request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("storage.s3.copy_parts"), "{problem}");
    }

    assert!(!extensions.contains("concatenation"), "{extensions}");
    assert!(extensions.contains("termination"), "{extensions}");
    assert_nothing_resumable_left(&app).await;
}

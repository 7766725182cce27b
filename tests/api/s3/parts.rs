//! Every part of a multipart upload but the last has the same size (`storage.s3.part_size_bytes`),
//! as providers such as Cloudflare R2 require, whatever the chunks the client sends and however
//! a resumable upload's bytes are split into PATCHes.

use futures_util::StreamExt;

use super::server::{MIB, S3Server, app_via, reach_via};
use crate::{
    helpers::{random_bytes, sha256_hex},
    proxy::FaultyProxy,
    tus::Tus,
};

const PART: usize = 6 * MIB;

/// Sizes in chunks of 100,000 bytes: batches that do not divide a part.
fn uneven(bytes: &[u8]) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

fn assert_equal_but_the_last(sizes: &[usize], total: usize) {
    let (last, rest) = sizes.split_last().expect("parts were sent");
    assert!(rest.iter().all(|size| *size == PART), "{sizes:?}");
    assert!(*last <= PART, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), total, "{sizes:?}");
}

#[tokio::test]
async fn an_upload_sent_in_uneven_chunks_is_stored_in_equal_parts() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let app = app_via(&bucket, proxy.port, |s| s.storage.s3.part_size_bytes = PART).await;
    let bytes = random_bytes(3 * PART + 12_345, 9);

    let part = reqwest::multipart::Part::stream(uneven(&bytes)).file_name("uneven.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let stored = app
        .client
        .post(app.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();

    assert_eq!(stored.status(), 201);
    let file: serde_json::Value = stored.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_equal_but_the_last(&proxy.part_sizes(), bytes.len());
}

#[tokio::test]
async fn a_resumable_upload_in_patches_that_end_anywhere_is_stored_in_equal_parts() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let app = app_via(&bucket, proxy.port, |s| s.storage.s3.part_size_bytes = PART).await;
    let bytes = random_bytes(3 * PART + 777, 10);
    let tus = Tus::of(&app);
    let path = tus.created(bytes.len() as u64, "patches.bin").await;

    // PATCHes that end past a part's minimum (5 MiB) but short of a part, and across parts.
    let mut offset = 0;
    for end in [PART - MIB / 2, 2 * PART + MIB, bytes.len()] {
        let patched = tus
            .patch(&path, offset as u64, uneven(&bytes[offset..end]))
            .await;
        assert_eq!(patched.status(), 204, "{:?}", patched.text().await);
        offset = end;
    }

    let id = crate::tus::id_of(&path);
    let file: serde_json::Value = app.get(&format!("/files/{id}")).await.json().await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_equal_but_the_last(&proxy.part_sizes(), bytes.len());
}

/// A client sending chunks of one size with their `Content-Length` (10 MiB; tus-js-client's
/// `chunkSize`) gets parts that divide them (5 MiB, under the configured 6 MiB): every PATCH
/// ends on a part's edge, so nothing is left to wait in the upload's row, and the size chosen
/// holds on another instance configured otherwise.
#[tokio::test]
async fn chunks_of_one_size_are_cut_into_parts_that_divide_them_on_any_instance() {
    const CHUNK: usize = 10 * MIB;
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let first = app_via(&bucket, proxy.port, |s| s.storage.s3.part_size_bytes = PART).await;
    let prefix = first.bucket.as_ref().unwrap().prefix.clone();
    let second = first
        .another_instance(|s| {
            reach_via(&bucket, proxy.port, s);
            s.storage.s3.prefix = prefix;
            s.storage.s3.part_size_bytes = 8 * MIB;
        })
        .await;
    let bytes = random_bytes(3 * CHUNK + 777, 12);
    let path = Tus::of(&first)
        .created(bytes.len() as u64, "chunks.bin")
        .await;

    for (index, start) in (0..bytes.len()).step_by(CHUNK).enumerate() {
        let end = (start + CHUNK).min(bytes.len());
        let instance = [&first, &second][index % 2];
        let patched = Tus::of(instance)
            .patch(&path, start as u64, bytes[start..end].to_vec())
            .await;
        assert_eq!(patched.status(), 204, "{:?}", patched.text().await);
        if end.is_multiple_of(CHUNK) {
            assert_eq!(proxy.part_sizes().iter().sum::<usize>(), end);
            let tail: i32 = sqlx::query_scalar("SELECT octet_length(tail) FROM resumable_uploads")
                .fetch_one(&first.pool)
                .await
                .unwrap();
            assert_eq!(tail, 0);
        }
    }

    let id = crate::tus::id_of(&path);
    first.assert_downloads(id, &sha256_hex(&bytes)).await;
    let sizes = proxy.part_sizes();
    assert_eq!(sizes.len(), 7, "{sizes:?}");
    assert!(sizes[..6].iter().all(|size| *size == 5 * MIB), "{sizes:?}");
    assert_eq!(sizes[6], 777);
}

/// The spilled parts counted by the process's recorder (shared by every app of this process,
/// so it only grows).
async fn spilled(app: &crate::helpers::TestApp) -> f64 {
    let scrape = app.get("/metrics").await.text().await.unwrap();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix("intake_s3_part_buffers_total{event=\"spilled\"} "))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// Three uploads at once through the smallest budget (a part and a step for parts being
/// filled): each has received 5 MiB, less than a part, before any may go on, so together they
/// hold more than the budget has and some of it spills. Every byte arrives in equal parts.
#[tokio::test]
async fn a_full_memory_budget_spills_parts_and_loses_no_byte() {
    let Some(bucket) = S3Server::start().await else {
        return;
    };
    let proxy = FaultyProxy::start(bucket.port).await;
    let app = app_via(&bucket, proxy.port, |s| {
        s.storage.s3.part_size_bytes = PART;
        s.storage.s3.buffer_memory_bytes = 0;
    })
    .await;
    let before = spilled(&app).await;
    let halfway = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let uploads = (0..3u64).map(|seed| {
        let bytes = random_bytes(2 * PART + 4321, 20 + seed);
        let (first, second) = bytes.split_at(5 * MIB);
        let halfway = std::sync::Arc::clone(&halfway);
        let (first, second) = (first.to_vec(), second.to_vec());
        let body = async_stream_of(first, second, halfway);
        let part = reqwest::multipart::Part::stream(body).file_name("spilled.bin");
        let form = reqwest::multipart::Form::new().part("file", part);
        let request = app.client.post(app.url("/upload")).multipart(form).send();
        async move { (request.await.unwrap(), sha256_hex(&bytes)) }
    });

    for (stored, sha256) in futures_util::future::join_all(uploads).await {
        assert_eq!(stored.status(), 201);
        let file: serde_json::Value = stored.json().await.unwrap();
        assert_eq!(file["sha256"], sha256);
        let content = app
            .get(&format!("/files/{}/content", file["id"].as_str().unwrap()))
            .await;
        assert_eq!(sha256_hex(&content.bytes().await.unwrap()), sha256);
    }
    assert!(spilled(&app).await > before);
    let sizes = proxy.part_sizes();
    assert_eq!(sizes.len(), 9, "{sizes:?}");
    assert!(
        sizes.iter().all(|size| *size == PART || *size == 4321),
        "{sizes:?}"
    );
}

/// `first`, then, once every upload has sent its first, `second`; in chunks of 100,000 bytes.
fn async_stream_of(
    first: Vec<u8>,
    second: Vec<u8>,
    halfway: std::sync::Arc<tokio::sync::Barrier>,
) -> reqwest::Body {
    let chunks = |bytes: Vec<u8>| {
        bytes
            .chunks(100_000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>()
    };
    let (first, second) = (chunks(first), chunks(second));
    let wait = futures_util::stream::once(async move {
        halfway.wait().await;
        Ok(Vec::new())
    });
    let stream = futures_util::stream::iter(first)
        .chain(wait)
        .chain(futures_util::stream::iter(second));
    reqwest::Body::wrap_stream(stream)
}

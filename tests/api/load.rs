//! Many clients at once: uploads of random sizes, with downloads and deletes in between.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures_util::future::join_all;
use uuid::Uuid;

use crate::helpers::{random_bytes, sha256_hex, spawn_app_with};

const UPLOADS: u64 = 300;
const MAX_SIZE: f64 = 8.0 * 1024.0 * 1024.0;

/// 1 byte to 8 MiB, log-uniform: mostly small files, a few large ones.
fn size_for(seed: u64) -> usize {
    let unit = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    MAX_SIZE.powf(unit).round().max(1.0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_downloads_and_deletes_keep_every_acknowledged_file() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.server.workers = 2;
            // 300 clients, all from 127.0.0.1 and anonymous: the cap per caller would refuse most.
            s.upload.max_in_flight_per_user = 0;
        })
        .await,
    );
    let kept: Arc<Mutex<BTreeMap<Uuid, String>>> = Arc::default();

    // Made before any request starts: generated inside the clients (unoptimised test code),
    // they held the test's two threads for seconds while open connections waited for their
    // bytes, and under the whole suite the server timed some out (408).
    let payloads: Vec<Vec<u8>> = (0..UPLOADS)
        .map(|seed| random_bytes(size_for(seed), seed))
        .collect();
    let clients = payloads.into_iter().zip(0..UPLOADS).map(|(bytes, seed)| {
        let (app, kept) = (Arc::clone(&app), Arc::clone(&kept));
        async move {
            let response = app
                .upload_file(&format!("{seed}.bin"), bytes.clone(), None)
                .await;
            assert_eq!(response.status(), 201, "upload {seed}");
            let body: serde_json::Value = response.json().await.unwrap();
            let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
            assert_eq!(body["sha256"], sha256_hex(&bytes));
            // Every fifth file is deleted, every other one read back at once.
            if seed % 5 == 0 {
                let url = app.url(&format!("/files/{id}"));
                let deleted = app.client.delete(url).send().await.unwrap();
                assert_eq!(deleted.status(), 204);
            } else {
                let sha256 = sha256_hex(&bytes);
                app.assert_downloads(id, &sha256).await;
                kept.lock().unwrap().insert(id, sha256);
            }
        }
    });
    join_all(clients).await;

    let kept = kept.lock().unwrap().clone();
    assert_eq!(
        app.assert_consistent().await,
        kept.keys().copied().collect()
    );
    for (id, sha256) in &kept {
        app.assert_downloads(*id, sha256).await;
    }
}

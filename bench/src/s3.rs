//! The S3 server's own ceiling on this machine: the bytes of intake's S3 cases sent straight to
//! the server by object_store (the client intake uses, with intake's part size and parts in
//! flight): no HTTP front, no multipart/form-data, no hashing, no database.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use object_store::{
    ObjectStoreExt, PutPayload, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};
use serde::{Deserialize, Serialize};

const MIB: usize = 1024 * 1024;
/// intake's defaults: `storage.s3.part_size_bytes` and `parts_in_flight`.
const PART: usize = 8 * MIB;
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Ceilings {
    /// One 1 GiB object, as a multipart upload.
    pub one_gib_mib_s: f64,
    /// 1 MiB objects, 16 PUTs at a time.
    pub one_mib_c16_mib_s: f64,
}

/// `url`: `http://KEY:SECRET@HOST:PORT/BUCKET`.
pub fn measure(url: &str, one_mib_total: usize) -> Result<S3Ceilings, Box<dyn std::error::Error>> {
    let client = Arc::new(client(url)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let big = Bytes::from(crate::cases::random_bytes(1024 * MIB));
        let started = Instant::now();
        let upload = client.put_multipart(&Path::from("ceiling/one-gib")).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        for chunk in big.chunks(PART) {
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.put(big.slice_ref(chunk));
        }
        writer.finish().await?;
        let one_gib_mib_s = 1024.0 / started.elapsed().as_secs_f64();
        drop(big);

        let small = Bytes::from(crate::cases::random_bytes(MIB));
        let started = Instant::now();
        let puts = stream::iter(0..one_mib_total)
            .map(|i| {
                let (client, small) = (Arc::clone(&client), small.clone());
                async move {
                    client
                        .put(&Path::from(format!("ceiling/{i}")), PutPayload::from(small))
                        .await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        puts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let one_mib_c16_mib_s = one_mib_total as f64 / started.elapsed().as_secs_f64();
        Ok(S3Ceilings {
            one_gib_mib_s,
            one_mib_c16_mib_s,
        })
    })
}

fn client(url: &str) -> Result<AmazonS3, Box<dyn std::error::Error>> {
    let url = url::Url::parse(url)?;
    let endpoint = format!(
        "http://{}:{}",
        url.host_str().ok_or("no host")?,
        url.port().ok_or("no port")?
    );
    Ok(AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(url.path().trim_matches('/'))
        .with_access_key_id(url.username())
        .with_secret_access_key(url.password().unwrap_or_default())
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()?)
}

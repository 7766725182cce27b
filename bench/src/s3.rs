//! The S3 server's own ceiling on this machine, measured in each round beside intake on S3: the
//! bytes of intake's S3 cases sent straight to the server by object_store (the client intake
//! uses, with intake's part size and parts in flight): no HTTP front, no multipart/form-data, no
//! hashing, no database.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use object_store::{
    ObjectStoreExt, PutPayload, WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};
use serde::{Deserialize, Serialize};

use crate::{
    cases::{Case, CaseResult, Figures, Kind},
    servers::S3_ALONE,
    usage::{self, Sampler},
};

const MIB: usize = 1024 * 1024;
/// intake's defaults: `storage.s3.part_size_bytes` and `parts_in_flight`.
const PART: usize = 8 * MIB;
const PARTS_IN_FLIGHT: usize = 2;

/// The same figures through boto3 (`bench/peer/s3_put.py`), measured once after the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Ceilings {
    /// One 1 GiB object, as a multipart upload.
    pub one_gib_mib_s: f64,
    /// 1 MiB objects, 16 PUTs at a time.
    pub one_mib_c16_mib_s: f64,
}

/// `case`'s objects PUT to the server at `url` (`http://KEY:SECRET@HOST:PORT/BUCKET`), as many
/// at a time as the case sends; larger than a part: a multipart upload. Memory and CPU are those
/// of `pid`, the S3 server.
pub fn put(url: &str, case: &Case, pid: u32) -> Result<CaseResult, Box<dyn std::error::Error>> {
    let Kind::Upload { size } = case.kind else {
        return Err(format!("{} uploads nothing", case.name).into());
    };
    let client = Arc::new(client(url)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let payload = Bytes::from(crate::cases::random_bytes(size));
    let rss_start = usage::tree_rss_kib(pid);
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let outcomes: Vec<Result<Duration, object_store::Error>> = runtime.block_on(
        stream::iter(0..case.total)
            .map(|i| {
                let (client, payload) = (Arc::clone(&client), payload.clone());
                async move {
                    let began = Instant::now();
                    let path = Path::from(format!("ceiling/{i}"));
                    if payload.len() > PART {
                        put_in_parts(&client, &path, payload).await?;
                    } else {
                        client.put(&path, PutPayload::from(payload)).await?;
                    }
                    Ok(began.elapsed())
                }
            })
            .buffer_unordered(case.concurrency)
            .collect(),
    );
    let wall = started.elapsed();
    let usage = sampler.finish();
    let mut errors = 0;
    let latencies = (outcomes.into_iter())
        .filter_map(|outcome| {
            outcome
                .inspect_err(|error| {
                    eprintln!("s3: {error}");
                    errors += 1;
                })
                .ok()
        })
        .collect();
    let figures = Figures {
        latencies,
        errors,
        wall,
        payload: size,
        rss_kib: (rss_start, usage.rss_peak_kib),
        cpu_s: usage.cpu_s,
    };
    Ok(figures.result(S3_ALONE, case.name))
}

async fn put_in_parts(
    client: &AmazonS3,
    path: &Path,
    payload: Bytes,
) -> Result<(), object_store::Error> {
    let upload = client.put_multipart(path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    for chunk in payload.chunks(PART) {
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.put(payload.slice_ref(chunk));
    }
    writer.finish().await?;
    Ok(())
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

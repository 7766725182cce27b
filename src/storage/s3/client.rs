//! The bucket's clients, as `storage.s3` describes them: one for every request but downloads,
//! bounded in total and by silence, and one for downloads, bounded by the bucket's silence
//! alone (`S3Store::read`).

use std::{io, time::Duration};

use object_store::{
    ClientOptions, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
};
use secrecy::ExposeSecret;

use crate::base::configuration::S3Settings;

/// The bucket's client as `settings` describe it.
pub fn client(settings: &S3Settings) -> object_store::Result<AmazonS3> {
    let total = Duration::from_secs(settings.request_timeout_secs.max(1));
    let options = options(settings).with_read_timeout(silence(settings));
    build(settings, options.with_timeout(total))
}

/// The client downloads go through: no bound of its own on a body, whose reads wait for the
/// client at the other end as much as for the bucket (`S3Store::read` bounds the bucket's
/// silence alone).
pub(super) fn reader(settings: &S3Settings) -> object_store::Result<AmazonS3> {
    build(settings, options(settings).with_timeout_disabled())
}

fn options(settings: &S3Settings) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_allow_http(settings.endpoint.starts_with("http://"))
}

pub(super) fn silence(settings: &S3Settings) -> Duration {
    Duration::from_secs(settings.read_timeout_secs.max(1))
}

fn build(settings: &S3Settings, options: ClientOptions) -> object_store::Result<AmazonS3> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(settings.secret_access_key.expose_secret())
        .with_virtual_hosted_style_request(!settings.path_style)
        // A bucket that does not answer fails a request within seconds, not minutes.
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        })
        .with_client_options(options);
    if !settings.endpoint.is_empty() {
        builder = builder.with_endpoint(&settings.endpoint);
    }
    builder.build()
}

/// The bucket did not answer in time: an `object_store` error, as every other failure of the
/// bucket is (`503 storage_unavailable` when nothing was sent yet).
pub(super) fn silent() -> io::Error {
    let error = object_store::Error::Generic {
        store: "S3",
        source: "the bucket sent nothing for storage.s3.read_timeout_secs".into(),
    };
    io::Error::new(io::ErrorKind::TimedOut, error)
}

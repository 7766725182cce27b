//! UploadPartCopy: a part of a multipart upload copied inside the bucket from another object,
//! so that a concatenation sends no byte to the bucket again. `object_store` uses the request
//! for its own copies but does not offer it; this sends it with the store's credentials,
//! signed by `object_store`'s SigV4 signer, to the address `object_store` uses.

use std::time::Duration;

use object_store::{
    aws::{AmazonS3, AwsAuthorizer},
    client::{HttpRequest, HttpRequestBody},
    path::Path,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::base::configuration::S3Settings;

/// The largest part S3 copies (and the largest part of any multipart upload).
pub const MAX_COPY_PART: u64 = 5 * 1024 * 1024 * 1024;

/// What S3 leaves unencoded in a query value; a key also keeps its `/`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const KEY: &AsciiSet = &QUERY.remove(b'/');

#[derive(Debug)]
pub struct PartCopier {
    http: reqwest::Client,
    /// Where the bucket's keys are, as `object_store` addresses them.
    endpoint: String,
    bucket: String,
    region: String,
}

impl PartCopier {
    pub fn new(settings: &S3Settings) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A copy of gigabytes takes the bucket a while; it answers only when done.
            .timeout(Duration::from_secs(
                settings.request_timeout_secs.max(1) * 10,
            ))
            .build()?;
        Ok(Self {
            http,
            endpoint: bucket_endpoint(
                &settings.endpoint,
                &settings.bucket,
                &settings.region,
                settings.path_style,
            ),
            bucket: settings.bucket.clone(),
            region: settings.region.clone(),
        })
    }

    /// Copies object `source` whole as part `index` (from 0) of multipart upload `upload_id`
    /// at `key`; the part's ETag.
    pub async fn copy(
        &self,
        client: &AmazonS3,
        key: &Path,
        upload_id: &str,
        index: usize,
        source: &Path,
    ) -> object_store::Result<String> {
        let url = format!(
            "{}/{}?partNumber={}&uploadId={}",
            self.endpoint,
            utf8_percent_encode(key.as_ref(), KEY),
            index + 1,
            utf8_percent_encode(upload_id, QUERY),
        );
        let copy_source = format!(
            "{}/{}",
            self.bucket,
            utf8_percent_encode(source.as_ref(), KEY)
        );
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = http::Method::PUT;
        *request.uri_mut() = url.parse().map_err(|error| failed(&url, error))?;
        let headers = request.headers_mut();
        headers.insert(
            "x-amz-copy-source",
            http::HeaderValue::from_str(&copy_source).map_err(|error| failed(&url, error))?,
        );
        // The host is signed: it must be the one the request goes to.
        let host = request.uri().authority().map(|a| a.to_string());
        if let Some(host) = host {
            let host = http::HeaderValue::from_str(&host).map_err(|error| failed(&url, error))?;
            request.headers_mut().insert(http::header::HOST, host);
        }
        let credential = client.credentials().get_credential().await?;
        AwsAuthorizer::new(&credential, "s3", &self.region).try_authorize(&mut request, None)?;

        let mut outgoing = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_LENGTH, 0);
        for (name, value) in request.headers() {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
        let response = outgoing.send().await.map_err(|error| failed(&url, error))?;
        let status = response.status();
        let body = response.text().await.map_err(|error| failed(&url, error))?;
        copied_part(status.is_success(), &body).ok_or_else(|| {
            failed(
                &url,
                format!("UploadPartCopy answered {status}: {}", body.trim()),
            )
        })
    }
}

/// The ETag of a copied part, from the bucket's answer; `None` if it is a failure. S3 may
/// answer `200` and put an `<Error>` in the body when a copy fails after it began.
fn copied_part(success: bool, body: &str) -> Option<String> {
    if !success || body.contains("<Error>") {
        return None;
    }
    let start = body.find("<ETag>")? + "<ETag>".len();
    let end = start + body[start..].find("</ETag>")?;
    let etag = body[start..end]
        .replace("&quot;", "\"")
        .replace("&#34;", "\"");
    Some(etag)
}

/// The address `object_store` sends a bucket's requests to (its builder's rule).
fn bucket_endpoint(endpoint: &str, bucket: &str, region: &str, path_style: bool) -> String {
    match (endpoint, path_style) {
        ("", false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        ("", true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        (endpoint, false) => endpoint.to_owned(),
        (endpoint, true) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
    }
}

fn failed(url: &str, error: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: format!("copying a part ({url}): {error}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_part_is_its_etag_and_an_error_in_a_200_is_a_failure() {
        let ok = r#"<?xml version="1.0"?><CopyPartResult><LastModified>2026-12-04T00:00:00Z</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>"#;
        assert_eq!(copied_part(true, ok).as_deref(), Some("\"abc\""));
        let late = "<Error><Code>InternalError</Code></Error>";
        assert_eq!(copied_part(true, late), None);
        assert_eq!(copied_part(false, ok), None);
        assert_eq!(copied_part(true, "<CopyPartResult/>"), None);
    }

    #[test]
    fn the_endpoint_is_object_stores() {
        let aws = bucket_endpoint("", "b", "eu-west-1", false);
        assert_eq!(aws, "https://b.s3.eu-west-1.amazonaws.com");
        let aws_path = bucket_endpoint("", "b", "eu-west-1", true);
        assert_eq!(aws_path, "https://s3.eu-west-1.amazonaws.com/b");
        let minio = bucket_endpoint("http://minio:9000/", "b", "us-east-1", true);
        assert_eq!(minio, "http://minio:9000/b");
    }
}

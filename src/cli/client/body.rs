//! The file's bytes as the client reads them: a chunk streamed as a request body, whose read
//! failures are told apart from the network's, and the whole file's SHA-256.

use std::{
    io::{self, SeekFrom},
    path::Path,
};

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::progress::Progress;

/// `size` bytes of `file` from `offset`, read as they are sent; each counts on the bar. A read
/// that fails ends the body with a `LocalRead`, told apart from the network's failures.
pub async fn chunk(
    file: &Path,
    offset: u64,
    size: u64,
    bar: Progress,
) -> io::Result<reqwest::Body> {
    let mut opened = tokio::fs::File::open(file).await?;
    opened.seek(SeekFrom::Start(offset)).await?;
    let stream = ReaderStream::new(opened.take(size))
        .inspect_ok(move |bytes| bar.inc(bytes.len() as u64))
        .map_err(LocalRead);
    Ok(reqwest::Body::wrap_stream(stream))
}

/// The file being sent could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LocalRead(io::Error);

/// The local read error that ended a request's body, if that is what failed it.
pub fn local_read(error: &reqwest::Error) -> Option<&io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(LocalRead(read)) = error.downcast_ref::<LocalRead>() {
            return Some(read);
        }
        cause = error.source();
    }
    None
}

pub fn sha256_of(file: &Path) -> io::Result<String> {
    use std::io::Read;
    let (mut opened, mut hasher) = (std::fs::File::open(file)?, Sha256::new());
    let mut buffer = vec![0; 1024 * 1024];
    loop {
        match opened.read(&mut buffer)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            read => hasher.update(&buffer[..read]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_cannot_be_read_is_told_apart_from_the_network() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read_to_end(&mut Vec::new()).await;
        });
        let unreadable = io::Error::from(io::ErrorKind::IsADirectory);
        let body = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"x")),
            Err(LocalRead(unreadable)),
        ]);
        let client = reqwest::Client::new();
        let url = format!("http://{address}/");
        let sent = client
            .post(url)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;

        let error = sent.expect_err("the body failed");
        assert_eq!(
            local_read(&error).map(io::Error::kind),
            Some(io::ErrorKind::IsADirectory)
        );
        let refused = client
            .get("http://127.0.0.1:1/")
            .send()
            .await
            .expect_err("nothing listens");
        assert!(local_read(&refused).is_none());
    }
}

//! The load generator: `concurrency` keep-alive HTTP/1.1 connections, opened before the clock
//! starts, share `total` requests; every response is checked and timed.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, sync::Barrier};

/// One request, sent `total` times.
pub struct Shot {
    pub method: Method,
    pub path: String,
    pub content_type: Option<String>,
    /// The `Authorization` header, for a server with auth on.
    pub authorization: Option<String>,
    pub body: Bytes,
}

/// Whether a response counts as a success; a fast wrong answer is an error.
pub type Check = dyn Fn(StatusCode, &[u8]) -> bool + Send + Sync;

#[derive(Debug, Default)]
pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub wall: Duration,
}

/// `threads`: the client's own threads (1 leaves the server the other core).
pub fn run(
    address: SocketAddr,
    shot: Arc<Shot>,
    total: usize,
    concurrency: usize,
    threads: usize,
    check: Arc<Check>,
) -> Outcome {
    let mut builder = if threads > 1 {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder.enable_all().build().expect("a client runtime");
    runtime.block_on(drive(address, shot, total, concurrency.min(total), check))
}

async fn drive(
    address: SocketAddr,
    shot: Arc<Shot>,
    total: usize,
    concurrency: usize,
    check: Arc<Check>,
) -> Outcome {
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        match connect(address).await {
            Ok(sender) => senders.push(sender),
            Err(error) => eprintln!("connect failed: {error}"),
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(senders.len() + 1));
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let (shot, next, start, check) =
                (shot.clone(), next.clone(), start.clone(), check.clone());
            tokio::spawn(async move {
                start.wait().await;
                worker(sender, address, &shot, total, &next, &*check).await
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut outcome = Outcome::default();
    for worker in workers {
        let (latencies, errors) = worker.await.unwrap_or_default();
        outcome.latencies.extend(latencies);
        outcome.errors += errors;
    }
    outcome.wall = started.elapsed();
    outcome.errors += total.saturating_sub(outcome.latencies.len() + outcome.errors);
    outcome
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn worker(
    mut sender: Sender,
    address: SocketAddr,
    shot: &Shot,
    total: usize,
    next: &AtomicUsize,
    check: &Check,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let sent = Instant::now();
        match send(&mut sender, address, shot).await {
            Ok((status, body)) if check(status, &body) => latencies.push(sent.elapsed()),
            Ok((status, body)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!(
                        "unexpected answer {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            Err(error) => {
                errors += 1;
                eprintln!("request failed: {error}");
                // The server may have closed the connection (e.g. after an error): reopen.
                match connect(address).await {
                    Ok(fresh) => sender = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    (latencies, errors)
}

async fn send(
    sender: &mut Sender,
    address: SocketAddr,
    shot: &Shot,
) -> Result<(StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    sender.ready().await?;
    let mut request = Request::builder()
        .method(shot.method.clone())
        .uri(&shot.path)
        .header(hyper::header::HOST, address.to_string());
    if let Some(content_type) = &shot.content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    if let Some(authorization) = &shot.authorization {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let response = sender
        .send_request(request.body(Full::new(shot.body.clone()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

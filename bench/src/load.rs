//! The load generator: `concurrency` keep-alive HTTP/1.1 connections, opened and each warmed
//! with one `GET /ping` before the clock starts, share `total` requests; every response is
//! checked and timed.

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
use hyper::{
    HeaderMap, Method, Request, StatusCode, Uri,
    client::conn::http1,
    header::{self, HeaderValue},
};
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

impl Shot {
    /// The request that opens each connection: cheap on every server, with the same credentials.
    fn warm_up(&self) -> Self {
        Self {
            method: Method::GET,
            path: "/ping".into(),
            content_type: None,
            authorization: self.authorization.clone(),
            body: Bytes::new(),
        }
    }
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
    shot: &Shot,
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
    let templates = Templates {
        shot: Template::new(shot, address).expect("a valid request"),
        warm_up: Template::new(&shot.warm_up(), address).expect("a valid request"),
    };
    runtime.block_on(drive(
        address,
        Arc::new(templates),
        total,
        concurrency.min(total),
        check,
    ))
}

async fn drive(
    address: SocketAddr,
    templates: Arc<Templates>,
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
        .map(|mut sender| {
            let (templates, next, start, check) = (
                templates.clone(),
                next.clone(),
                start.clone(),
                check.clone(),
            );
            tokio::spawn(async move {
                // A completed exchange shows the server accepted the connection: until then it
                // may still be setting it up, and that is not what the case measures. Any
                // answer will do (a server with a rate limit may refuse some).
                let _ = send(&mut sender, &templates.warm_up).await;
                start.wait().await;
                worker(sender, address, &templates.shot, total, &next, &*check).await
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

pub type Sender = http1::SendRequest<Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A keep-alive HTTP/1.1 connection, its requests sent as soon as they are written.
pub async fn connect(address: SocketAddr) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn worker(
    mut sender: Sender,
    address: SocketAddr,
    template: &Template,
    total: usize,
    next: &AtomicUsize,
    check: &Check,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let sent = Instant::now();
        match send(&mut sender, template).await {
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

struct Templates {
    shot: Template,
    /// `GET /ping`, sent once on each connection before the clock starts.
    warm_up: Template,
}

/// The request as sent, built once: the client's own work per request is part of what a
/// run on a shared machine measures, so it is kept to copying this.
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    fn new(shot: &Shot, address: SocketAddr) -> Result<Self, BoxError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::try_from(address.to_string())?);
        if let Some(content_type) = &shot.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::try_from(content_type)?);
        }
        if let Some(authorization) = &shot.authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::try_from(authorization)?);
        }
        Ok(Self {
            method: shot.method.clone(),
            uri: shot.path.parse()?,
            headers,
            body: shot.body.clone(),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

async fn send(sender: &mut Sender, template: &Template) -> Result<(StatusCode, Bytes), BoxError> {
    sender.ready().await?;
    let response = sender.send_request(template.request()).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

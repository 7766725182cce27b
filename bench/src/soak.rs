//! The soak: a mixed load at a fixed rate for minutes on end (uploads of mixed sizes, downloads,
//! listings, deletes, checkouts), reported minute by minute: answers, errors, latency and the
//! server's memory. Requests are scheduled by the clock, not by the previous answer, and each
//! latency counts from when its request was due, so a stalled server shows up as latency
//! instead of as a quietly lower rate.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    cases::{BOUNDARY, ORDER, multipart, random_bytes, verified},
    load::{Sender, connect},
    usage,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Keep-alive connections sharing the due requests.
const CONNECTIONS: usize = 64;

/// One minute of the soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Minute {
    pub minute: usize,
    pub ok: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Without the checkouts, whose simulated providers take a second by design.
    pub p99_without_checkout_ms: f64,
    /// The server's resident memory at the minute's end.
    pub rss_mib: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Soak {
    pub rate: u32,
    pub minutes: Vec<Minute>,
    /// What each tenth of the requests is, in order.
    pub mix: String,
}

/// What request `n` is: sizes in a fixed rotation, with a larger file every 200th request.
#[derive(Debug, Clone, Copy)]
enum Step {
    Upload(usize),
    Download,
    List,
    Delete,
    Checkout,
}

const MIX: [Step; 10] = [
    Step::Upload(KIB),
    Step::Upload(KIB),
    Step::Upload(16 * KIB),
    Step::Upload(256 * KIB),
    Step::Upload(MIB),
    Step::Download,
    Step::Download,
    Step::List,
    Step::Delete,
    Step::Checkout,
];
const LARGE: usize = 16 * MIB;

fn step(n: usize) -> Step {
    if n % 200 == 199 {
        Step::Upload(LARGE)
    } else {
        MIX[n % MIX.len()]
    }
}

pub fn mix() -> String {
    format!(
        "uploads of 1 KiB ×2, 16 KiB, 256 KiB, 1 MiB; downloads ×2; a listing; a delete; a checkout (and a {} MiB upload every 200th request)",
        LARGE / MIB
    )
}

/// Stored files' ids and sizes: what downloads and deletes pick from.
type Stored = Arc<Mutex<Vec<(String, usize)>>>;

struct Answer {
    minute: usize,
    latency: Duration,
    ok: bool,
    checkout: bool,
}

pub fn run(address: SocketAddr, pid: u32, rate: u32, minutes: usize) -> Soak {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a client runtime");
    runtime.block_on(drive(address, pid, rate, minutes))
}

async fn drive(address: SocketAddr, pid: u32, rate: u32, minutes: usize) -> Soak {
    let payloads: Vec<(usize, Bytes, String)> = [KIB, 16 * KIB, 256 * KIB, MIB, LARGE]
        .into_iter()
        .map(|size| {
            let bytes = random_bytes(size);
            let sha = hex::encode(Sha256::digest(&bytes));
            (size, multipart(&bytes), sha)
        })
        .collect();
    let payloads = Arc::new(payloads);
    let stored: Stored = Arc::default();
    let (due, queue) = async_channel();
    let (answers, mut collected) = mpsc::unbounded_channel::<Answer>();
    let started = Instant::now();
    for _ in 0..CONNECTIONS {
        let (queue, answers, payloads, stored) = (
            queue.clone(),
            answers.clone(),
            payloads.clone(),
            stored.clone(),
        );
        tokio::spawn(async move {
            let mut sender = None;
            while let Some((n, at)) = next(&queue).await {
                let ok = exchange(&mut sender, address, n, &payloads, &stored).await;
                let minute = at.duration_since(started).as_secs() as usize / 60;
                let _ = answers.send(Answer {
                    minute,
                    latency: at.elapsed(),
                    ok,
                    checkout: matches!(step(n), Step::Checkout),
                });
            }
        });
    }
    drop(answers);

    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = rate as usize * 60 * minutes;
    let mut rss_at = Vec::with_capacity(minutes);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticks.tick().await;
        let scheduled = started + interval.mul_f64(n as f64);
        due.send((n, scheduled)).expect("workers are alive");
        if (n + 1) % (rate as usize * 60) == 0 {
            rss_at.push(usage::tree_rss_kib(pid) as f64 / 1024.0);
            eprintln!("soak: minute {} of {minutes} sent", rss_at.len());
        }
    }
    drop(due);

    let mut per_minute: Vec<Tally> = (0..minutes).map(|_| Tally::default()).collect();
    while let Some(answer) = collected.recv().await {
        let tally = &mut per_minute[answer.minute.min(minutes - 1)];
        match (answer.ok, answer.checkout) {
            (false, _) => tally.errors += 1,
            (true, true) => tally.checkouts.push(answer.latency),
            (true, false) => tally.others.push(answer.latency),
        }
    }
    let minutes = per_minute
        .into_iter()
        .zip(rss_at)
        .enumerate()
        .map(|(i, (tally, rss_mib))| tally.minute(i + 1, rss_mib))
        .collect();
    Soak {
        rate,
        minutes,
        mix: mix(),
    }
}

/// One minute's answers.
#[derive(Default)]
struct Tally {
    checkouts: Vec<Duration>,
    others: Vec<Duration>,
    errors: usize,
}

impl Tally {
    fn minute(mut self, minute: usize, rss_mib: f64) -> Minute {
        self.others.sort();
        let p99_without_checkout_ms = percentile(&self.others, 0.99);
        let mut all = self.others;
        all.extend(self.checkouts);
        all.sort();
        Minute {
            minute,
            ok: all.len(),
            errors: self.errors,
            p50_ms: percentile(&all, 0.50),
            p99_ms: percentile(&all, 0.99),
            max_ms: percentile(&all, 1.0),
            p99_without_checkout_ms,
            rss_mib,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let index = ((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(last);
    sorted[index].as_secs_f64() * 1000.0
}

type Due = (usize, Instant);

/// A queue many workers take from: tokio's receiver is not shared, so it sits behind a lock.
fn async_channel() -> (
    mpsc::UnboundedSender<Due>,
    Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Due>>>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (sender, Arc::new(tokio::sync::Mutex::new(receiver)))
}

async fn next(queue: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Due>>) -> Option<Due> {
    queue.lock().await.recv().await
}

/// Sends one request (reconnecting if need be) and checks its answer.
async fn exchange(
    sender: &mut Option<Sender>,
    address: SocketAddr,
    n: usize,
    payloads: &[(usize, Bytes, String)],
    stored: &Stored,
) -> bool {
    let step = step(n);
    if sender.is_none() {
        *sender = connect(address).await.ok();
    }
    let Some(connection) = sender.as_mut() else {
        return false;
    };
    // Downloads pick by the request's number; deletes take the oldest file.
    let picked = |remove: bool| {
        let mut stored = stored.lock().unwrap();
        match (stored.is_empty(), remove) {
            (true, _) => None,
            (false, true) => Some(stored.remove(0)),
            (false, false) => Some(stored[n % stored.len()].clone()),
        }
    };
    let mut downloading = None;
    let (method, path, content_type, body) = match step {
        Step::Upload(size) => {
            let (_, body, _) = payloads
                .iter()
                .find(|(s, ..)| *s == size)
                .expect("a payload");
            let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
            (
                Method::POST,
                "/upload".to_owned(),
                Some(content_type),
                body.clone(),
            )
        }
        Step::Download => match picked(false) {
            Some((id, size)) => {
                let path = format!("/files/{id}/content");
                downloading = Some((id, size));
                (Method::GET, path, None, Bytes::new())
            }
            None => (Method::GET, "/files?limit=20".into(), None, Bytes::new()),
        },
        Step::List => (Method::GET, "/files?limit=20".into(), None, Bytes::new()),
        Step::Delete => match picked(true) {
            Some((id, _)) => (Method::DELETE, format!("/files/{id}"), None, Bytes::new()),
            None => (Method::GET, "/files?limit=20".into(), None, Bytes::new()),
        },
        Step::Checkout => (
            Method::POST,
            "/checkout".into(),
            Some("application/json".to_owned()),
            Bytes::from_static(ORDER.as_bytes()),
        ),
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = path.parse().expect("a valid path");
    let headers = request.headers_mut();
    headers.insert(header::HOST, address.to_string().parse().expect("a host"));
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, content_type.parse().expect("a type"));
    }
    let answer = async {
        connection.ready().await?;
        let response = connection.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await;
    let Ok((status, body)) = answer else {
        *sender = None;
        return false;
    };
    match step {
        Step::Upload(size) => {
            let (_, _, sha) = payloads
                .iter()
                .find(|(s, ..)| *s == size)
                .expect("a payload");
            let ok = verified(size, sha.clone())(status, &body);
            if ok
                && let Ok(file) = serde_json::from_slice::<serde_json::Value>(&body)
                && let Some(id) = file["id"].as_str()
            {
                stored.lock().unwrap().push((id.to_owned(), size));
            }
            ok
        }
        Step::Delete => status == StatusCode::NO_CONTENT,
        Step::Download => match downloading {
            Some((_, size)) if status == StatusCode::OK => body.len() == size,
            // Deleted while it was being fetched: a race the server must answer with 404.
            Some((id, _)) if status == StatusCode::NOT_FOUND => !stored
                .lock()
                .unwrap()
                .iter()
                .any(|(stored, _)| *stored == id),
            Some(_) => false,
            None => status.is_success(),
        },
        _ => status.is_success(),
    }
}

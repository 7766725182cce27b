//! The benchmark's cases and how each is run and measured.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    load::{self, Check, Shot},
    usage::{self, Sampler},
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
pub const BOUNDARY: &str = "intakeBenchBoundary4f1c";
/// The order every checkout sends.
pub const ORDER: &str = r#"{"customer_email":"bench@example.com","amount_cents":1299,"currency":"EUR","items":[{"sku":"BENCH-1","quantity":1}]}"#;

/// How a server takes an upload and tells what it stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST /upload`, multipart/form-data with the file in part `file`, answered with JSON
    /// carrying `size` (and `sha256` where the server computes one): intake, the FastAPI peers.
    #[default]
    Intake,
    /// `POST /`, the same multipart body, answered with the stored file's URL (rustypaste).
    /// After the case every file it names is read from the server's upload directory
    /// (`--stored-in`) and its SHA-256 compared. (Not over HTTP: rustypaste answers a GET on a
    /// keep-alive connection only after a 40 ms delayed ACK, which made reading 20,000 files
    /// back take longer than the case.)
    Url,
    /// `POST /upload` with the file's bytes as the whole body, answered like intake: the bare
    /// sink, which has no multipart parser.
    Raw,
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Upload { size: usize },
    Slow,
    Checkout,
    Ping,
}

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub kind: Kind,
    pub concurrency: usize,
    pub total: usize,
}

pub const SUITE: [Case; 9] = [
    Case {
        name: "upload 1 KiB c=64",
        kind: Kind::Upload { size: KIB },
        concurrency: 64,
        total: 20_000,
    },
    Case {
        name: "upload 1 MiB c=16",
        kind: Kind::Upload { size: MIB },
        concurrency: 16,
        total: 2_000,
    },
    Case {
        name: "upload 1 MiB c=256",
        kind: Kind::Upload { size: MIB },
        concurrency: 256,
        total: 2_048,
    },
    Case {
        name: "upload 100 MiB c=1",
        kind: Kind::Upload { size: 100 * MIB },
        concurrency: 1,
        total: 5,
    },
    Case {
        name: "upload 1 GiB c=1",
        kind: Kind::Upload { size: 1024 * MIB },
        concurrency: 1,
        total: 2,
    },
    Case {
        name: "slow 1 s c=1000",
        kind: Kind::Slow,
        concurrency: 1_000,
        total: 1_000,
    },
    Case {
        name: "slow 1 s c=10000",
        kind: Kind::Slow,
        concurrency: 10_000,
        total: 10_000,
    },
    Case {
        name: "checkout c=100",
        kind: Kind::Checkout,
        concurrency: 100,
        total: 500,
    },
    Case {
        name: "ping c=64",
        kind: Kind::Ping,
        concurrency: 64,
        total: 100_000,
    },
];

/// One case against one target, as written to the results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub target: String,
    pub case: String,
    pub ok: usize,
    pub errors: usize,
    pub wall_s: f64,
    pub rps: f64,
    pub mib_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub rss_start_mib: f64,
    pub rss_peak_mib: f64,
    /// The server's CPU time over the case (user and system, its whole process tree), and that
    /// per MiB of payload answered (0 when none was).
    #[serde(default)]
    pub cpu_s: f64,
    #[serde(default)]
    pub cpu_ms_per_mib: f64,
    /// The round of an interleaved run it was measured in (from 1).
    #[serde(default)]
    pub round: u32,
    /// Measured with `Case::quick`: a smoke test, not a figure to quote.
    #[serde(default)]
    pub quick: bool,
    /// What the server had done with an upload when it answered, as the run states it.
    #[serde(default)]
    pub durability: String,
}

/// What a run measured, before it is summed up.
pub struct Figures {
    /// One per answer that passed its check.
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub wall: Duration,
    /// Bytes each answer's request carried.
    pub payload: usize,
    /// The server's resident KiB before and at its peak.
    pub rss_kib: (u64, u64),
    /// The server's CPU seconds (user and system) over the case.
    pub cpu_s: f64,
}

impl Figures {
    pub fn result(mut self, target: &str, case: &str) -> CaseResult {
        self.latencies.sort();
        let ok = self.latencies.len();
        let wall = self.wall.as_secs_f64();
        CaseResult {
            target: target.to_owned(),
            case: case.to_owned(),
            ok,
            errors: self.errors,
            wall_s: wall,
            rps: ok as f64 / wall,
            mib_s: (ok * self.payload) as f64 / MIB as f64 / wall,
            p50_ms: percentile(&self.latencies, 0.50),
            p99_ms: percentile(&self.latencies, 0.99),
            max_ms: self.latencies.last().map_or(0.0, ms),
            rss_start_mib: self.rss_kib.0 as f64 / 1024.0,
            rss_peak_mib: self.rss_kib.1 as f64 / 1024.0,
            cpu_s: self.cpu_s,
            cpu_ms_per_mib: match ok * self.payload {
                0 => 0.0,
                bytes => self.cpu_s * 1000.0 / (bytes as f64 / MIB as f64),
            },
            round: 1,
            quick: false,
            durability: String::new(),
        }
    }
}

impl Case {
    /// What a quick run of this case sends instead, for its label.
    pub fn quick_label(&self) -> String {
        let quick = self.quick();
        let size = match quick.kind {
            Kind::Upload { size } if size >= MIB => format!(" × {} MiB", size / MIB),
            Kind::Upload { size } => format!(" × {} KiB", size / KIB),
            _ => String::new(),
        };
        format!(
            "{} (quick: {}{size}, c={})",
            self.name, quick.total, quick.concurrency
        )
    }

    /// A smoke-test version: one round of requests, small files.
    pub fn quick(mut self) -> Self {
        self.total = self.concurrency.min(self.total).min(64);
        self.concurrency = self.total;
        if let Kind::Upload { size } = &mut self.kind {
            *size = (*size).min(MIB);
        }
        self
    }

    /// One client thread leaves the server the other core; but while the server merely waits
    /// (`/slow`), one thread reading 10,000 answers in turn is what the latency would measure,
    /// and `/ping` asks so little of the server that one client thread cannot keep it busy
    /// (measured: a sixth of both cores idle, the client thread the bottleneck).
    fn client_threads(&self) -> usize {
        match self.kind {
            Kind::Slow | Kind::Ping => 2,
            _ => 1,
        }
    }

    /// `token`: sent as a bearer token with every request.
    pub fn run(
        &self,
        target: &str,
        address: SocketAddr,
        pid: u32,
        token: Option<&str>,
        api: Api,
        stored_in: Option<&Path>,
    ) -> CaseResult {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let (mut shot, check, payload) = self.request(api, &stored);
        shot.authorization = token.map(|token| format!("Bearer {token}"));
        let rss_start = usage::tree_rss_kib(pid);
        let sampler = Sampler::start(pid);
        let outcome = load::run(
            address,
            &shot,
            self.total,
            self.concurrency,
            self.client_threads(),
            check,
        );
        let usage = sampler.finish();
        let mut latencies = outcome.latencies;
        let mut errors = outcome.errors;
        if let Kind::Upload { size } = self.kind
            && api == Api::Url
        {
            let wrong = read_back(stored_in, &stored.lock().unwrap(), size);
            latencies.truncate(latencies.len().saturating_sub(wrong));
            errors += wrong;
        }
        let figures = Figures {
            latencies,
            errors,
            wall: outcome.wall,
            payload,
            rss_kib: (rss_start, usage.rss_peak_kib),
            cpu_s: usage.cpu_s,
        };
        figures.result(target, self.name)
    }

    /// The request, how to check its answer, and the payload bytes it carries. `stored`
    /// receives the paths a `Url` server answers with.
    fn request(&self, api: Api, stored: &Arc<Mutex<Vec<String>>>) -> (Shot, Arc<Check>, usize) {
        let get = |path: &str| Shot {
            method: Method::GET,
            path: path.to_owned(),
            content_type: None,
            authorization: None,
            body: Bytes::new(),
        };
        let success: Arc<Check> = Arc::new(|status: StatusCode, _: &[u8]| status.is_success());
        match self.kind {
            Kind::Ping => (get("/ping"), success, 0),
            Kind::Slow => (get("/slow?ms=1000"), success, 0),
            Kind::Checkout => {
                let shot = Shot {
                    method: Method::POST,
                    path: "/checkout".into(),
                    content_type: Some("application/json".into()),
                    authorization: None,
                    body: Bytes::from_static(ORDER.as_bytes()),
                };
                (shot, success, 0)
            }
            Kind::Upload { size } => {
                let payload = random_bytes(size);
                let sha256 = hex::encode(Sha256::digest(&payload));
                let (path, content_type, body) = match api {
                    Api::Raw => ("/upload", "application/octet-stream".into(), payload.into()),
                    Api::Intake | Api::Url => (
                        if api == Api::Url { "/" } else { "/upload" },
                        format!("multipart/form-data; boundary={BOUNDARY}"),
                        multipart(&payload),
                    ),
                };
                let shot = Shot {
                    method: Method::POST,
                    path: path.into(),
                    content_type: Some(content_type),
                    authorization: None,
                    body,
                };
                let check: Arc<Check> = match api {
                    Api::Url => Arc::new(located(stored.clone())),
                    Api::Intake | Api::Raw => Arc::new(verified(size, sha256)),
                };
                (shot, check, size)
            }
        }
    }
}

/// An upload counts only if the server reports the right size, and the right sha256 when it
/// reports one (the FastAPI peer does not).
pub fn verified(size: usize, sha256: String) -> impl Fn(StatusCode, &[u8]) -> bool + Send + Sync {
    move |status, body| {
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        status.is_success()
            && answer["size"].as_u64() == Some(size as u64)
            && answer["sha256"].as_str().is_none_or(|hash| hash == sha256)
    }
}

/// A `Url` server's answer: the stored file's URL, whose file name is kept to be read back.
fn located(stored: Arc<Mutex<Vec<String>>>) -> impl Fn(StatusCode, &[u8]) -> bool + Send + Sync {
    move |status, body| {
        let Ok(url) = std::str::from_utf8(body) else {
            return false;
        };
        let url = url.trim();
        let ok = status.is_success() && url.starts_with("http://");
        if ok {
            let name = url.rsplit('/').next().unwrap_or_default();
            stored.lock().unwrap().push(name.to_owned());
        }
        ok
    }
}

/// Reads back every stored file from `dir` and returns how many are not the payload sent.
fn read_back(dir: Option<&Path>, names: &[String], size: usize) -> usize {
    let Some(dir) = dir else {
        eprintln!("the files cannot be verified without --stored-in");
        return names.len();
    };
    let expected = Sha256::digest(random_bytes(size));
    names
        .iter()
        .filter(|name| match std::fs::read(dir.join(name)) {
            Ok(bytes) => Sha256::digest(&bytes) != expected,
            Err(_) => true,
        })
        .count()
}

pub fn multipart(payload: &[u8]) -> Bytes {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.reserve(payload.len() + 64);
    body.extend_from_slice(payload);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

/// Incompressible, reproducible bytes (xorshift64*).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn ms(duration: &Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    ms(&sorted[index])
}

#[cfg(test)]
mod tests {
    use super::SUITE;

    #[test]
    fn a_quick_case_is_labelled_with_what_it_sends() {
        let label = |name: &str| {
            SUITE
                .iter()
                .find(|case| case.name == name)
                .unwrap()
                .quick_label()
        };
        assert_eq!(
            label("upload 1 GiB c=1"),
            "upload 1 GiB c=1 (quick: 1 × 1 MiB, c=1)"
        );
        assert_eq!(
            label("upload 1 KiB c=64"),
            "upload 1 KiB c=64 (quick: 64 × 1 KiB, c=64)"
        );
        assert_eq!(
            label("slow 1 s c=10000"),
            "slow 1 s c=10000 (quick: 64, c=64)"
        );
    }
}

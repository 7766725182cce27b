//! The resumable-upload case: one file sent with tus in fixed chunks over one keep-alive
//! connection, as tus clients send it (a POST, then a PATCH per chunk). It counts only if the
//! file the server made has the file's SHA-256.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    cases::{CaseResult, Figures, random_bytes},
    rss::{self, Sampler},
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

#[derive(Debug, Clone, Copy)]
pub struct TusCase {
    pub name: &'static str,
    pub size: usize,
    pub chunk: usize,
    pub uploads: usize,
}

/// Beside the multipart "upload 1 GiB c=1": the same bytes, resumable.
pub const CASE: TusCase = TusCase {
    name: "tus 1 GiB in 10 MiB chunks c=1",
    size: 1024 * MIB,
    chunk: 10 * MIB,
    uploads: 2,
};

impl TusCase {
    pub fn quick(self) -> Self {
        Self {
            size: MIB,
            chunk: 256 * KIB,
            uploads: 1,
            ..self
        }
    }

    pub fn quick_label(&self) -> String {
        format!("{} (quick: 1 × 1 MiB in 256 KiB chunks)", self.name)
    }

    pub fn run(&self, target: &str, address: SocketAddr, pid: u32) -> CaseResult {
        let payload = random_bytes(self.size);
        let sha256 = hex::encode(Sha256::digest(&payload));
        let rss_start = rss::tree_rss_kib(pid);
        let sampler = Sampler::start(pid);
        let started = Instant::now();
        let mut durations = Vec::new();
        let mut errors = 0;
        for _ in 0..self.uploads {
            let began = Instant::now();
            match upload(address, &payload, self.chunk) {
                Ok(stored) if stored == sha256 => durations.push(began.elapsed()),
                Ok(stored) => {
                    eprintln!("tus: the server stored SHA-256 {stored}, not {sha256}");
                    errors += 1;
                }
                Err(error) => {
                    eprintln!("tus: {error}");
                    errors += 1;
                }
            }
        }
        let figures = Figures {
            latencies: durations,
            errors,
            wall: started.elapsed(),
            payload: self.size,
            rss_kib: (rss_start, sampler.finish()),
        };
        figures.result(target, self.name)
    }
}

/// Sends `payload` and returns the SHA-256 of the file the server made of it.
fn upload(address: SocketAddr, payload: &[u8], chunk: usize) -> io::Result<String> {
    let stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut http = Http {
        reader: BufReader::new(stream.try_clone()?),
        writer: stream,
        address,
    };
    let created = http.exchange(
        "POST",
        "/tus/",
        &[("Upload-Length", payload.len().to_string())],
        &[],
    )?;
    let path = created
        .header("location")
        .ok_or_else(|| io::Error::other(format!("no Location: {}", created.status)))?
        .to_owned();
    let mut offset = 0;
    let mut file = None;
    for piece in payload.chunks(chunk) {
        let patched = http.exchange(
            "PATCH",
            &path,
            &[
                ("Upload-Offset", offset.to_string()),
                ("Content-Type", "application/offset+octet-stream".into()),
            ],
            piece,
        )?;
        if patched.status != 204 {
            return Err(io::Error::other(format!(
                "PATCH answered {}",
                patched.status
            )));
        }
        offset += piece.len();
        file = patched.header("content-location").map(str::to_owned);
    }
    let file = file.ok_or_else(|| io::Error::other("the last PATCH made no file"))?;
    let stored = http.exchange("GET", &file, &[], &[])?;
    let object: serde_json::Value =
        serde_json::from_slice(&stored.body).map_err(io::Error::other)?;
    Ok(object["sha256"].as_str().unwrap_or_default().to_owned())
}

struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    address: SocketAddr,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Http {
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> io::Result<Answer> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {line:?}")))?;
        let mut answer = Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        };
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                answer
                    .headers
                    .push((name.to_owned(), value.trim().to_owned()));
            }
        }
        let length = answer
            .header("content-length")
            .and_then(|length| length.parse().ok())
            .unwrap_or(0);
        answer.body = vec![0; length];
        self.reader.read_exact(&mut answer.body)?;
        Ok(answer)
    }
}

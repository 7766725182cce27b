//! The resumable-upload case: one file sent with tus in fixed chunks over one keep-alive
//! connection, as tus clients send it (a POST, then a PATCH per chunk). It counts only if the
//! file the server made has the file's SHA-256.

use std::{io, net::SocketAddr, time::Instant};

use sha2::{Digest, Sha256};

use crate::{
    cases::{CaseResult, Figures, random_bytes},
    usage::{self, Sampler},
    wire::{Http, path_of},
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
        let rss_start = usage::tree_rss_kib(pid);
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
        let usage = sampler.finish();
        let figures = Figures {
            latencies: durations,
            errors,
            wall: started.elapsed(),
            payload: self.size,
            rss_kib: (rss_start, usage.rss_peak_kib),
            cpu_s: usage.cpu_s,
        };
        figures.result(target, self.name)
    }
}

/// Sends `payload` and returns the SHA-256 of what the server stored: the one it reports for the
/// file it made (intake: `Content-Location`), or else of the bytes it gives back for the upload
/// (tusd, `@tus/server`).
fn upload(address: SocketAddr, payload: &[u8], chunk: usize) -> io::Result<String> {
    let mut http = Http::connect(address, vec![("Tus-Resumable", "1.0.0".into())])?;
    let created = http.exchange(
        "POST",
        "/tus/",
        &[("Upload-Length", payload.len().to_string())],
        &[],
    )?;
    let path = created
        .header("location")
        .map(|location| path_of(location).to_owned())
        .ok_or_else(|| io::Error::other(format!("no Location: {}", created.status)))?;
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
    match file {
        Some(file) => {
            let stored = http.exchange("GET", &file, &[], &[])?;
            let object: serde_json::Value =
                serde_json::from_slice(&stored.body).map_err(io::Error::other)?;
            Ok(object["sha256"].as_str().unwrap_or_default().to_owned())
        }
        None => {
            let stored = http.exchange("GET", &path, &[], &[])?;
            Ok(hex::encode(Sha256::digest(&stored.body)))
        }
    }
}

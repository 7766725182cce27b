//! What the machine itself can do: disk writes with fdatasync, SHA-256 on one core, loopback
//! TCP. intake's figures are stated as a share of these.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::Instant,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceilings {
    /// `dd if=/dev/zero bs=1M count=1024 conv=fdatasync`, median of `DD_RUNS` runs.
    pub disk_write_mib_s: f64,
    /// The slowest and the fastest of those runs: a virtual disk's speed wanders from minute
    /// to minute, and a reader should see by how much.
    pub disk_write_range_mib_s: [f64; 2],
    pub sha256_mib_s: f64,
    pub loopback_mib_s: f64,
    /// The S3 server's PUTs through boto3 (`bench/peer/s3_put.py`), as a user's own script
    /// would send them (through object_store, the client intake uses, they are measured in the
    /// rounds: `s3::put`).
    #[serde(default)]
    pub s3_boto3: Option<crate::s3::S3Ceilings>,
}

/// Odd, so that the median is one of the runs.
pub const DD_RUNS: usize = 5;

pub fn measure(dir: &Path, s3_boto3: Option<crate::s3::S3Ceilings>) -> Ceilings {
    let disk = disk_write(dir);
    Ceilings {
        disk_write_mib_s: disk[DD_RUNS / 2],
        disk_write_range_mib_s: [disk[0], disk[DD_RUNS - 1]],
        sha256_mib_s: sha256(),
        loopback_mib_s: loopback(),
        s3_boto3,
    }
}

/// Every run's MiB/s, slowest first.
fn disk_write(dir: &Path) -> Vec<f64> {
    let target = dir.join("ceiling-dd.bin");
    let mut runs: Vec<f64> = (0..DD_RUNS)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", target.display()))
                .args(["bs=1M", "count=1024", "conv=fdatasync", "status=none"])
                .status()
                .expect("dd runs");
            assert!(status.success(), "dd failed");
            1024.0 / started.elapsed().as_secs_f64()
        })
        .collect();
    let _ = std::fs::remove_file(&target);
    runs.sort_by(f64::total_cmp);
    runs
}

fn sha256() -> f64 {
    let data = crate::cases::random_bytes(256 * MIB);
    let started = Instant::now();
    let mut hasher = Sha256::new();
    for _ in 0..4 {
        hasher.update(&data);
    }
    std::hint::black_box(hasher.finalize());
    1024.0 / started.elapsed().as_secs_f64()
}

fn loopback() -> f64 {
    const TOTAL: usize = 4096 * MIB;
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = vec![0u8; MIB];
        let mut received = 0;
        while received < TOTAL {
            match stream.read(&mut buffer).unwrap() {
                0 => break,
                n => received += n,
            }
        }
    });
    let chunk = vec![7u8; MIB];
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    for _ in 0..TOTAL / MIB {
        stream.write_all(&chunk).unwrap();
    }
    drop(stream);
    reader.join().unwrap();
    (TOTAL / MIB) as f64 / started.elapsed().as_secs_f64()
}

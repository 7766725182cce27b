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
    /// `dd if=/dev/zero bs=1M count=1024 conv=fdatasync`, median of three runs.
    pub disk_write_mib_s: f64,
    pub sha256_mib_s: f64,
    pub loopback_mib_s: f64,
}

pub fn measure(dir: &Path) -> Ceilings {
    Ceilings {
        disk_write_mib_s: disk_write(dir),
        sha256_mib_s: sha256(),
        loopback_mib_s: loopback(),
    }
}

fn disk_write(dir: &Path) -> f64 {
    let target = dir.join("ceiling-dd.bin");
    let mut runs: Vec<f64> = (0..3)
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
    runs[1]
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

//! What a server's process tree uses while a case runs: resident memory (sampled; its peak)
//! and CPU time, user and system (the difference over the case).

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

const INTERVAL: Duration = Duration::from_millis(20);

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
    pid: u32,
    cpu_start: f64,
}

/// What a case cost the server.
pub struct Usage {
    pub rss_peak_kib: u64,
    /// User and system CPU seconds of every process in the tree.
    pub cpu_s: f64,
}

/// The kernel's `USER_HZ`, the unit of `/proc/PID/stat`'s times: 100 on every Linux the
/// benchmark runs on (x86_64 and arm64).
const TICKS_PER_S: f64 = 100.0;

/// User plus system CPU seconds of `pid` and its descendants, threads that ended included.
pub fn tree_cpu_s(pid: u32) -> f64 {
    let ticks: u64 = (tree(pid).into_iter())
        .filter_map(|process| {
            let stat = fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
            let mut after = stat[stat.rfind(')')? + 2..].split_whitespace();
            // utime and stime: fields 14 and 15, the 12th and 13th after the command name.
            let user: u64 = after.nth(11)?.parse().ok()?;
            let system: u64 = after.next()?.parse().ok()?;
            Some(user + system)
        })
        .sum();
    ticks as f64 / TICKS_PER_S
}

/// Resident KiB of `pid` and all its descendants (uvicorn's workers are child processes).
pub fn tree_rss_kib(pid: u32) -> u64 {
    tree(pid).iter().map(|p| status_kib(*p, "VmRSS:")).sum()
}

impl Sampler {
    /// Resets each process's high-water mark, then samples until `finish`.
    pub fn start(pid: u32) -> Self {
        for process in tree(pid) {
            // Needs permission; without it the HWM counts since the process started.
            let _ = fs::write(format!("/proc/{process}/clear_refs"), "5");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(tree_rss_kib(pid));
                std::thread::sleep(INTERVAL);
            }
            peak
        });
        let cpu_start = tree_cpu_s(pid);
        Self {
            stop,
            thread,
            pid,
            cpu_start,
        }
    }

    /// The peak in KiB (the largest sampled sum, or a single process's high-water mark if a
    /// spike fell between samples), and the CPU time since `start`.
    pub fn finish(self) -> Usage {
        let cpu_s = tree_cpu_s(self.pid) - self.cpu_start;
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.thread.join().unwrap_or(0);
        let hwm = tree(self.pid)
            .iter()
            .map(|p| status_kib(*p, "VmHWM:"))
            .max()
            .unwrap_or(0);
        Usage {
            rss_peak_kib: sampled.max(hwm),
            cpu_s,
        }
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces; the parent pid follows its closing paren.
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found
}

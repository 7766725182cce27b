//! Resident memory of a server's process tree, sampled while a case runs.

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
        Self { stop, thread, pid }
    }

    /// The peak in KiB: the largest sampled sum, or a single process's high-water mark if a
    /// spike fell between samples.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.thread.join().unwrap_or(0);
        let hwm = tree(self.pid)
            .iter()
            .map(|p| status_kib(*p, "VmHWM:"))
            .max()
            .unwrap_or(0);
        sampled.max(hwm)
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

//! Ports for servers a test starts, stops and starts again on the same port (s3s-fs, a child
//! intake a page keeps talking to), and for addresses where nothing may listen.
//!
//! A port bound to `:0`, released and bound again later can be taken in between: by another
//! test's `:0` bind, or by an outgoing connection, both of which the kernel serves from its
//! ephemeral range. So these ports come from below that range, where the kernel never hands
//! one out by itself, and each is claimed with a lock file for as long as the test process
//! lives, so that two test processes (the nested bucket suite runs beside its parent) never
//! share one. The lock goes with the process, however it ends.

use std::{
    fs::File,
    net::TcpListener,
    sync::{Mutex, atomic::AtomicU16, atomic::Ordering},
};

/// How many ports below the ephemeral range are used.
const SPAN: u16 = 8192;

/// The locks this process holds: each keeps its port out of every other test process's hands.
static CLAIMED: Mutex<Vec<File>> = Mutex::new(Vec::new());
static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port no other test takes during this run, free when handed out. A server that stops
/// leaves it unclaimed by anyone else, so it can start on it again.
pub fn reserved_port() -> u16 {
    let (low, _) = ephemeral_range();
    let first = low
        .checked_sub(SPAN)
        .expect("the ephemeral range starts above 8192");
    let folder = std::env::temp_dir().join("intake-test-ports");
    std::fs::create_dir_all(&folder).unwrap();
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + start.wrapping_add(step) % SPAN;
        let lock = File::create(folder.join(format!("{port}.lock"))).unwrap();
        if lock.try_lock().is_err() {
            continue; // another test process holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // a service of the machine listens there
        }
        CLAIMED.lock().unwrap().push(lock);
        return port;
    }
    panic!("no free port in {first}..{low}: every one is taken or claimed");
}

/// The kernel's range for `:0` binds and outgoing connections.
fn ephemeral_range() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_owned());
    let mut bounds = range.split_whitespace().map(|n| n.parse().unwrap());
    (bounds.next().unwrap(), bounds.next().unwrap())
}

#[test]
fn reserved_ports_are_distinct_free_and_outside_the_ephemeral_range() {
    let (low, high) = ephemeral_range();
    let ports: Vec<u16> = (0..20).map(|_| reserved_port()).collect();
    let mut distinct = ports.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    for port in ports {
        assert!(!(low..=high).contains(&port), "{port} is ephemeral");
        TcpListener::bind(("127.0.0.1", port)).expect("free when handed out");
    }
}

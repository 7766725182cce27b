//! An S3 server for the tests: s3s-fs from the Rust registry (it checks request signatures;
//! `.ci/run` installs it), one per test, that a test can stop and start again.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use intake::base::configuration::{Settings, StorageKind};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{
    child::ChildServer,
    helpers::{GENEROUS_TIMEOUT_MS, TestApp, may_skip, reserved_port, spawn_app_with, use_bucket},
};

pub const KEY: &str = "intake-test";
pub const SECRET: &str = "intake-test-secret";
pub const BUCKET: &str = "uploads";
pub const MIB: usize = 1024 * 1024;

pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    pub port: u16,
}

impl S3Server {
    /// `None` where s3s-fs is not installed (a developer's machine); under `CI` that fails.
    pub async fn start() -> Option<Self> {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        // `restart` starts it again on this port.
        let port = reserved_port();
        let mut server = Self {
            child: match spawn_s3s_fs(root.path(), port) {
                Ok(child) => child,
                Err(error) => {
                    may_skip(&format!("s3s-fs is not installed ({error}); see .ci/run"));
                    return None;
                }
            },
            root,
            port,
        };
        server.wait_until_running().await;
        Some(server)
    }

    /// Its log says when it listens.
    pub async fn wait_until_running(&mut self) {
        let mut lines = BufReader::new(self.child.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("server is running") {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return;
            }
        }
        panic!("s3s-fs exited before it listened");
    }

    pub async fn stop(&mut self) {
        self.child.kill().await.unwrap();
    }

    pub async fn restart(&mut self) {
        self.child = spawn_s3s_fs(self.root.path(), self.port).unwrap();
        self.wait_until_running().await;
    }

    pub fn url(&self, secret: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!(
            "http://{KEY}:{secret}@127.0.0.1:{}/{BUCKET}",
            self.port
        ))
        .unwrap()
    }

    /// s3s-fs keeps the parts of an unfinished multipart upload beside the buckets, as
    /// `.upload_id-<id>.part-<n>`: what an abort must remove.
    pub fn unfinished_parts(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(".upload_id-"))
            })
            .collect()
    }

    /// Every object under `prefix` in the bucket, however deep (s3s-fs keeps each as a file;
    /// its own metadata lives beside the buckets).
    pub fn objects(&self, prefix: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.map(|entry| entry.unwrap().path()) {
                match entry.is_dir() {
                    true => walk(&entry, found),
                    false => found.push(entry),
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.root.path().join(BUCKET).join(prefix), &mut found);
        found
    }

    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("APP__STORAGE__KIND", "s3".to_owned()),
            ("APP__STORAGE__S3__BUCKET", BUCKET.to_owned()),
            (
                "APP__STORAGE__S3__ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("APP__STORAGE__S3__ACCESS_KEY_ID", KEY.to_owned()),
            ("APP__STORAGE__S3__SECRET_ACCESS_KEY", SECRET.to_owned()),
            ("APP__STORAGE__S3__PATH_STYLE", "true".to_owned()),
            ("APP__STORAGE__S3__PREFIX", prefix.to_owned()),
            ("APP__STORAGE__S3__PART_SIZE_BYTES", (5 * MIB).to_string()),
        ]
        .map(|(name, value)| (name.to_owned(), value))
        .to_vec()
    }
}

fn spawn_s3s_fs(root: &Path, port: u16) -> std::io::Result<Child> {
    Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// The server's log line of a sweep that removed one object; a sweep that never comes fails
/// the test instead of hanging it.
pub async fn swept_one(server: &mut ChildServer) -> serde_json::Value {
    let sweep = server.wait_for(|event| {
        event["message"] == "storage sweep repaired leftovers" && event["removed"] == 1
    });
    tokio::time::timeout(Duration::from_millis(GENEROUS_TIMEOUT_MS), sweep)
        .await
        .expect("a sweep settles it")
}

pub fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub async fn app_on(server: &S3Server, customize: impl FnOnce(&mut Settings)) -> TestApp {
    app_via(server, server.port, customize).await
}

/// As `app_on`, the bucket reached through `port` (a proxy in front of the server).
pub async fn app_via(
    server: &S3Server,
    port: u16,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with(|s| {
        reach_via(server, port, s);
        customize(s);
    })
    .await
}

/// Settings for the bucket of `server` reached through `port` (a prefix of its own, parts of
/// S3's smallest size).
pub fn reach_via(server: &S3Server, port: u16, s: &mut Settings) {
    let mut url = server.url(SECRET);
    url.set_port(Some(port)).unwrap();
    s.storage.kind = StorageKind::S3;
    use_bucket(&mut s.storage.s3, &url);
    s.storage.s3.part_size_bytes = 5 * MIB;
}

/// An intake binary of its own on `bucket` (objects under `prefix`, reached through `via`, a
/// proxy's port, when given), sweeping every second, with the test's database: the database's
/// app, the storage root, and the running instance.
pub async fn sweeping_instance(
    bucket: &S3Server,
    prefix: &str,
    via: Option<u16>,
) -> (TestApp, tempfile::TempDir, ChildServer) {
    let db = app_on(bucket, |_| {}).await;
    let root = tempfile::tempdir().unwrap();
    let mut env = bucket.env(prefix);
    if let Some(port) = via {
        for (name, value) in &mut env {
            if name == "APP__STORAGE__S3__ENDPOINT" {
                *value = format!("http://127.0.0.1:{port}");
            }
        }
    }
    env.push(("APP__STORAGE__SWEEP_INTERVAL_SECS".into(), "1".into()));
    let intake = ChildServer::start(&db.db_url(), root.path(), &pairs(&env)).await;
    (db, root, intake)
}

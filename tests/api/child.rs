//! The real `intake` binary as a child process, for faults that end a process: SIGKILL and
//! SIGTERM. Its JSON log lines are the events a test waits for (no sleeps, no polling).

use std::{path::Path, process::Stdio};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::TcpStream,
    process::{Child, ChildStdout, Command},
};

use crate::helpers::random_bytes;

/// The longest a test waits for a log line: far beyond anything a test waits for (a lease of
/// 35 s, an idle timeout of 30 s), so that only a line that will never come reaches it.
const WAIT_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

pub struct ChildServer {
    pub child: Child,
    pub address: String,
    logs: Lines<BufReader<ChildStdout>>,
}

impl ChildServer {
    pub async fn start(db_url: &str, root: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(Self::command(db_url, root, env)).await
    }

    /// The command `start` runs, for a test to add to (`--config FILE`).
    pub fn command(db_url: &str, root: &Path, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("APP_ENVIRONMENT", "local")
            .env("APP__DATABASE__URL", db_url)
            .env("APP__STORAGE__ROOT", root)
            .env("APP__SERVER__PORT", "0")
            .env("APP__SERVER__WORKERS", "1")
            .env("RUST_LOG", "info,intake=debug")
            .envs(env.iter().copied());
        command
    }

    /// Starts `command` (the intake binary, set up by the caller) with JSON logs, and waits until
    /// it listens.
    pub async fn spawn(mut command: Command) -> Self {
        let mut child = command
            .env("APP__LOG__FORMAT", "json")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the intake binary starts");
        let logs = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut server = Self {
            child,
            address: String::new(),
            logs,
        };
        let listening = server.wait_for_log("intake is listening").await;
        server.address = format!("127.0.0.1:{}", listening["port"]);
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Reads the server's log until a line with this message; returns that line.
    pub async fn wait_for_log(&mut self, message: &str) -> Value {
        self.wait_for(|event| event["message"] == message).await
    }

    /// Reads the server's log until a line matches: a failure, not a hang, if none comes within
    /// `WAIT_BOUND`.
    pub async fn wait_for(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT_BOUND, async {
            while let Some(line) = self.logs.next_line().await.expect("read the log") {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && matches(&event)
                {
                    return Some(event);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| {
            panic!("the server did not log what the test waits for in {WAIT_BOUND:?}")
        });
        if let Some(event) = found {
            return event;
        }
        // How it ended (a signal, an exit code), for a failure that cannot be run again; what it
        // said on the way out is on the test's stderr, which the server shares.
        let status = self.child.wait().await;
        panic!("the server exited ({status:?}) before logging what the test waits for");
    }

    /// Everything the server logs from now until it exits.
    pub async fn remaining_logs(&mut self) -> String {
        let mut all = String::new();
        while let Some(line) = self.logs.next_line().await.expect("read the log") {
            all.push_str(&line);
            all.push('\n');
        }
        all
    }

    /// Waits until the server has started writing the raw upload's file.
    pub async fn wait_for_raw_upload(&mut self) -> Value {
        let receiving = self
            .wait_for(|e| e["message"] == "receiving file" && e["filename"] == RAW_NAME)
            .await;
        let id = receiving["id"].as_str().expect("the file's id").to_owned();
        self.wait_for(|e| {
            e["message"] == "object file created"
                && e["journal"]
                    .as_str()
                    .is_some_and(|path| path.ends_with(&id))
        })
        .await;
        receiving
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id().expect("running"), signal);
    }
}

pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

const RAW_NAME: &str = "raw-upload.bin";

/// A multipart upload over a raw connection: the head announces `total` body bytes of one
/// `file` part; `start` sends the first `sent` of them, `finish` the rest. The server closes the
/// connection after its answer, so that the answer can be read to the end.
pub struct RawUpload {
    pub stream: TcpStream,
    body: Vec<u8>,
    sent: usize,
}

impl RawUpload {
    pub async fn start(address: &str, file_bytes: usize, sent: usize) -> Self {
        let mut body = format!(
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{RAW_NAME}\"\r\n\r\n"
        )
        .into_bytes();
        body.extend(random_bytes(file_bytes, 99));
        body.extend_from_slice(b"\r\n--B--\r\n");
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..sent]).await.unwrap();
        Self { stream, body, sent }
    }

    /// Sends the rest of the body and returns the raw response.
    pub async fn finish(mut self) -> String {
        use tokio::io::AsyncReadExt;
        self.stream
            .write_all(&self.body[self.sent..])
            .await
            .unwrap();
        let mut response = Vec::new();
        self.stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }
}

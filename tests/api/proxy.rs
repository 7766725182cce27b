//! A TCP proxy in front of a server (S3, Postgres) that a test makes misbehave on command: it
//! forwards, or hangs (takes every byte, answers none), or sends the answers back slowly, or
//! cuts each connection after some bytes of answer; some modes know S3 requests. The mode
//! applies at once, to open connections too (clients keep their connections between requests).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Reads what the client sends, answers nothing.
    Hang,
    /// Answers at about this many bytes a second.
    Slow {
        bytes_per_sec: usize,
    },
    /// Closes each connection once this many bytes of answer went through it.
    Cut {
        after: usize,
    },
    /// Lets the next CompleteMultipartUpload through, and closes its connection when the
    /// server's answer comes, instead of passing it on; then forwards.
    LoseCompletion,
    /// Closes the connection of every delete, passes the rest.
    RefuseDeletes,
}

pub struct FaultyProxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    /// Every part upload (`PUT …?partNumber=…`) that went through, as it arrived.
    parts: Arc<Mutex<Vec<Part>>>,
}

/// A part upload: its multipart upload, its number and its `Content-Length`.
#[derive(Clone)]
struct Part {
    upload: String,
    number: u32,
    size: usize,
}

impl FaultyProxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let parts: Arc<Mutex<Vec<Part>>> = Arc::default();
        let (shared, seen) = (Arc::clone(&mode), Arc::clone(&parts));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let losing = Arc::new(AtomicBool::new(false));
                let connection = Connection {
                    mode: Arc::clone(&shared),
                    losing,
                    parts: Arc::clone(&seen),
                };
                tokio::spawn(requests(client_read, server_write, connection.clone()));
                tokio::spawn(answers(server_read, client_write, connection));
            }
        });
        Self { port, mode, parts }
    }

    /// The sizes of the parts sent so far: each multipart upload's in part order (parts go
    /// several at once, and may arrive out of it), the uploads in the order they began.
    pub fn part_sizes(&self) -> Vec<usize> {
        let mut parts = self.parts.lock().unwrap().clone();
        let mut uploads: Vec<String> = Vec::new();
        for part in &parts {
            if !uploads.contains(&part.upload) {
                uploads.push(part.upload.clone());
            }
        }
        let began = |part: &Part| uploads.iter().position(|u| *u == part.upload);
        parts.sort_by_key(|part| (began(part), part.number));
        parts.into_iter().map(|part| part.size).collect()
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

/// One connection's view of the proxy: the mode, and whether its next answer is to be lost.
#[derive(Clone)]
struct Connection {
    mode: Arc<Mutex<Mode>>,
    losing: Arc<AtomicBool>,
    parts: Arc<Mutex<Vec<Part>>>,
}

fn mode(shared: &Mutex<Mode>) -> Mode {
    *shared.lock().unwrap()
}

/// Client to server; while hanging, what the client sends goes nowhere.
async fn requests(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, connection: Connection) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        let chunk = &buffer[..read];
        let current = mode(&connection.mode);
        // A completion is `POST <key>?uploadId=…` (a creation is `POST <key>?uploads`).
        if current == Mode::LoseCompletion
            && chunk.starts_with(b"POST ")
            && chunk.windows(9).any(|w| w == b"uploadId=")
        {
            connection.losing.store(true, Ordering::SeqCst);
            *connection.mode.lock().unwrap() = Mode::Forward;
        }
        if let Some(part) = part_upload(chunk) {
            connection.parts.lock().unwrap().push(part);
        }
        if current == Mode::RefuseDeletes && is_delete(chunk) {
            return;
        }
        if current != Mode::Hang && to.write_all(chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// A part upload's head (`PUT <key>?partNumber=…&uploadId=…`): which part, and its size.
fn part_upload(request: &[u8]) -> Option<Part> {
    let head = String::from_utf8_lossy(request);
    let line = head.lines().next()?;
    if !(line.starts_with("PUT ") && line.contains("partNumber=")) {
        return None;
    }
    let query = line.split(' ').nth(1)?.split_once('?')?.1;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    let size = head.lines().find_map(|header| {
        let (name, value) = header.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    Some(Part {
        upload: param("uploadId")?.to_owned(),
        number: param("partNumber")?.parse().ok()?,
        size,
    })
}

/// `DELETE <key>`, or the bulk delete `POST <bucket>?delete` (what the client sends for one).
fn is_delete(request: &[u8]) -> bool {
    let line = request
        .split(|byte| *byte == b'\r')
        .next()
        .unwrap_or_default();
    line.starts_with(b"DELETE ") || line.windows(8).any(|w| w == b"?delete ")
}

/// Server to client, as the mode says.
async fn answers(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, connection: Connection) {
    let shared = connection.mode;
    let mut buffer = vec![0; 64 * 1024];
    let mut sent = 0;
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        // The server has answered the completion: the client never hears of it.
        if connection.losing.load(Ordering::SeqCst) {
            return;
        }
        let mut chunk = &buffer[..read];
        while !chunk.is_empty() {
            let take = match mode(&shared) {
                Mode::Forward | Mode::LoseCompletion | Mode::RefuseDeletes => chunk.len(),
                // Dropped, the connection kept open.
                Mode::Hang => break,
                // A tenth of a second's worth, then a tenth of a second's pause: a slow link,
                // not something the test waits for.
                Mode::Slow { bytes_per_sec } => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    (bytes_per_sec / 10).clamp(1, chunk.len())
                }
                Mode::Cut { after } if sent >= after => return,
                Mode::Cut { after } => (after - sent).min(chunk.len()),
            };
            if to.write_all(&chunk[..take]).await.is_err() {
                return;
            }
            sent += take;
            chunk = &chunk[take..];
        }
    }
    let _ = to.shutdown().await;
}

//! Hostile input: generated malformed multipart bodies, and names and types that try to get a
//! browser or a header to do something.

use proptest::{
    prelude::*,
    test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{NOT_INLINE, random_bytes, spawn_app, spawn_app_with};

const BOUNDARY: &str = "XyZzy";

/// A well-formed form with a text field and a file part holding `contents`.
fn valid_body(contents: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(contents);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The file's size: a few bytes (kept in Postgres) or beyond `storage.inline_max_bytes` (an
/// object in storage), so that a mutation can cut or break a body on either path.
fn file_size() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..64, NOT_INLINE..3 * NOT_INLINE]
}

fn part(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut part = format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").into_bytes();
    part.extend_from_slice(body);
    part.extend_from_slice(b"\r\n");
    part
}

fn closed(mut parts: Vec<u8>) -> Vec<u8> {
    parts.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    parts
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    DropByte(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    WrongBoundary,
    NoClosingBoundary,
    HugeHeader(usize),
    ManyParts(usize),
    Nested,
    InvalidUtf8Filename,
    BadFilenameStar(String),
    DuplicateFileFields,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        any::<prop::sample::Index>().prop_map(Mutation::DropByte),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        Just(Mutation::WrongBoundary),
        Just(Mutation::NoClosingBoundary),
        (1usize..200).prop_map(|kib| Mutation::HugeHeader(kib * 1024)),
        (2usize..3000).prop_map(Mutation::ManyParts),
        Just(Mutation::Nested),
        Just(Mutation::InvalidUtf8Filename),
        prop_oneof![
            Just("UTF-8''%ZZ%".to_owned()),
            Just("bogus".to_owned()),
            Just("UTF-8''%FF%FE".to_owned()),
            Just("ISO-8859-1'en'%E9t%E9".to_owned()),
            "[ -~]{0,40}",
        ]
        .prop_map(Mutation::BadFilenameStar),
        Just(Mutation::DuplicateFileFields),
    ]
}

/// Byte-level mutations change the body they are given; structural ones build a new body.
fn apply(mut body: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::Truncate(at) if !body.is_empty() => body.truncate(at.index(body.len())),
        Mutation::DropByte(at) if !body.is_empty() => {
            body.remove(at.index(body.len()));
        }
        Mutation::Truncate(_) | Mutation::DropByte(_) => {}
        Mutation::Insert(at, bytes) => {
            let at = at.index(body.len() + 1);
            body.splice(at..at, bytes.iter().copied());
        }
        Mutation::WrongBoundary => {
            body = String::from_utf8_lossy(&body)
                .replace(BOUNDARY, "Other")
                .into_bytes()
        }
        Mutation::NoClosingBoundary => body.truncate(body.len().saturating_sub(BOUNDARY.len() + 6)),
        Mutation::HugeHeader(len) => {
            let header = format!(
                "Content-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nX-Pad: {}",
                "p".repeat(*len)
            );
            body = closed(part(&header, b"x"));
        }
        Mutation::ManyParts(count) => {
            let one = part(
                "Content-Disposition: form-data; name=\"f\"; filename=\"f\"",
                b"x",
            );
            body = closed(one.repeat(*count));
        }
        Mutation::Nested => {
            let inner = b"--inner\r\nContent-Disposition: file; filename=\"n.txt\"\r\n\r\nnested\r\n--inner--";
            body = closed(part(
                "Content-Disposition: form-data; name=\"file\"\r\nContent-Type: multipart/mixed; boundary=inner",
                inner,
            ));
        }
        Mutation::InvalidUtf8Filename => {
            let mut header = b"Content-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
            header.extend_from_slice(&[0xff, 0xfe, b'a', 0xc3]);
            header.extend_from_slice(b"\"");
            let mut raw = format!("--{BOUNDARY}\r\n").into_bytes();
            raw.extend(header);
            raw.extend_from_slice(b"\r\n\r\nx\r\n");
            body = closed(raw);
        }
        Mutation::BadFilenameStar(value) => {
            let header =
                format!("Content-Disposition: form-data; name=\"file\"; filename*={value}");
            body = closed(part(&header, b"x"));
        }
        Mutation::DuplicateFileFields => {
            let one = part(
                "Content-Disposition: form-data; name=\"file\"; filename=\"d.txt\"",
                b"x",
            );
            body = closed([one.clone(), one].concat());
        }
    }
    body
}

/// The seed the suite runs with; `PROPTEST_RNG_SEED=N` (or `PROPTEST_CASES=N`) explores others
/// by hand. A failing case is saved to `REGRESSIONS` and replayed first on every later run:
/// commit that file with the fix.
const SEED: u64 = 33;
const REGRESSIONS: &str = "tests/api/hostile.proptest-regressions";

fn property_config() -> Config {
    let config = Config {
        cases: 300,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    };
    match config.rng_seed {
        RngSeed::Random => Config {
            rng_seed: RngSeed::Fixed(SEED),
            ..config
        },
        RngSeed::Fixed(_) => config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_malformed_bodies_never_cause_a_5xx_and_leave_nothing_half_done() {
    let app = spawn_app_with(|s| s.upload.max_files = 20).await;
    let mut runner = TestRunner::new(property_config());
    let strategy = (file_size(), prop::collection::vec(mutation(), 1..3));
    let runtime = tokio::runtime::Handle::current();
    // proptest drives a synchronous closure (so that it can shrink and persist a failure); each
    // case is sent from it on this runtime.
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(size, mutations)| {
            let body = mutations
                .iter()
                .fold(valid_body(&random_bytes(size, size as u64)), apply);
            let content_type = match mutations.len() {
                1 => format!("multipart/form-data; boundary={BOUNDARY}"),
                _ => format!("multipart/form-data; boundary=\"{BOUNDARY}\""),
            };
            let (status, problem) = runtime.block_on(async {
                let response = app
                    .client
                    .post(app.url("/files"))
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status();
                (status, response.json::<serde_json::Value>().await.ok())
            });
            prop_assert!(!status.is_server_error(), "{status}");
            if !status.is_success() {
                prop_assert!(
                    problem.as_ref().is_some_and(|p| p["code"].is_string()),
                    "{status}: {problem:?}"
                );
            }
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    app.uploads_settled().await;
    app.assert_consistent().await;
}

#[tokio::test]
async fn executable_types_are_never_served_for_a_browser_to_render() {
    let app = spawn_app().await;
    let cases = [
        (
            "page.html",
            "text/html",
            "<script>alert(document.cookie)</script>",
        ),
        (
            "image.svg",
            "image/svg+xml",
            "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        ),
        ("app.js", "application/javascript", "alert(1)"),
    ];
    for (name, content_type, content) in cases {
        let body: serde_json::Value = app
            .upload_file(name, content.as_bytes().to_vec(), Some(content_type))
            .await
            .json()
            .await
            .unwrap();
        let response = app.get(body["url"].as_str().unwrap()).await;
        let headers = response.headers();
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment;"),
            "{name}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{name}");
    }
}

#[tokio::test]
async fn names_cannot_inject_headers() {
    let app = spawn_app().await;
    // CR/LF, quotes and semicolons, percent-encoded in filename* so that they reach the server.
    let params = "filename=\"x\"; filename*=UTF-8''evil%22%3B%20filename%3D%22pwn.html%0D%0ASet-Cookie%3A%20a%3Db";
    let raw = format!(
        "--B\r\nContent-Disposition: form-data; name=\"file\"; {params}\r\n\r\nx\r\n--B--\r\n"
    );
    let response = app
        .client
        .post(app.url("/upload"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["filename"],
        "evil\"; filename=\"pwn.htmlSet-Cookie: a=b"
    );

    let download = app.get(body["url"].as_str().unwrap()).await;

    assert!(!download.headers().contains_key("set-cookie"));
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    let params: Vec<&str> = disposition.split(';').map(str::trim).collect();
    assert_eq!(
        params,
        [
            "attachment",
            "filename=\"evil__ filename=_pwn.htmlSet-Cookie: a=b\"",
            "filename*=UTF-8''evil%22%3B%20filename%3D%22pwn.htmlSet-Cookie%3A%20a%3Db",
        ]
    );
}

#[tokio::test]
async fn client_controlled_sizes_are_bounded() {
    let app = spawn_app().await;
    // A query string far beyond any legitimate cursor.
    let cursor = "9".repeat(20_000);
    let response = app.get(&format!("/files?cursor={cursor}")).await;
    assert!(response.status().is_client_error(), "{}", response.status());
    // A request head beyond what the server buffers: written on a raw connection, so that the
    // server's early answer is read even though it stops reading the head.
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    let head = format!(
        "GET /ping HTTP/1.1\r\nHost: {}\r\nx-big: {}\r\n\r\n",
        app.host(),
        "a".repeat(256 * 1024)
    );
    let (mut reader, mut writer) = stream.split();
    let (_, answer) = tokio::join!(writer.write_all(head.as_bytes()), async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the server closes; a reset after its answer ends the read too.
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    });
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(
        app.get("/ping").await.status(),
        200,
        "the server still serves"
    );
}

/// Garbage sent by anyone must not fill the error log: actix-http's one ERROR per broken
/// connection becomes a count, told at WARN at most once a minute (and at shutdown).
#[tokio::test]
async fn malformed_requests_are_counted_and_told_at_warn_never_at_error() {
    let db = spawn_app().await;
    let root = tempfile::tempdir().unwrap();
    let mut server = crate::child::ChildServer::start(&db.db_url(), root.path(), &[]).await;
    const SENT: usize = 7;
    for _ in 0..SENT {
        let mut stream = tokio::net::TcpStream::connect(&server.address)
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    }
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(&format!("intake_http_connection_errors_total {SENT}")),
        "{metrics}"
    );

    server.signal("TERM");
    let logs = server.remaining_logs().await;
    assert!(!logs.contains(r#""level":"ERROR""#), "{logs}");
    let told: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|event: &serde_json::Value| event["count"].is_number())
        .collect();
    assert_eq!(told.len(), 1, "{logs}");
    assert_eq!(told[0]["level"], "WARN");
    assert_eq!(told[0]["count"], SENT);
    assert!(
        told[0]["last"].as_str().unwrap().contains("stream error"),
        "{logs}"
    );
}

use reqwest::multipart::Form;
use uuid::Uuid;

use crate::helpers::{
    NOT_INLINE, assert_problem, file_part, random_bytes, sha256_hex, spawn_app, spawn_app_with,
};

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

#[tokio::test]
async fn tutorial_upload_answers_201_with_the_file_object() {
    let app = spawn_app().await;
    let bytes = b"hello intake\n".repeat(80);

    let response = app
        .upload_file("test.txt", bytes.clone(), Some("text/plain"))
        .await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(location, format!("/files/{id}"));
    assert_eq!(body["filename"], "test.txt");
    assert_eq!(body["content_type"], "text/plain");
    assert_eq!(body["size"], bytes.len());
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["url"], format!("/files/{id}/content"));
    let created_at = body["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .expect("created_at is RFC 3339");
    assert_eq!(
        app.assert_consistent()
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [id]
    );
}

#[tokio::test]
async fn size_and_sha256_are_computed_while_streaming_a_large_file() {
    let app = spawn_app().await;
    let bytes = random_bytes(5 * 1024 * 1024 + 17, 1);

    let response = app.upload_file("big.bin", bytes.clone(), None).await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["size"], bytes.len());
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    let row: (i64, Vec<u8>) = sqlx::query_as("SELECT size, sha256 FROM files")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(row.0 as usize, bytes.len());
    assert_eq!(hex::encode(row.1), sha256_hex(&bytes));
    // Listed as it was answered.
    let listed: serde_json::Value = app.get("/files").await.json().await.unwrap();
    assert_eq!(listed["files"], serde_json::json!([body]));
    app.assert_consistent().await;
}

#[tokio::test]
async fn other_form_fields_are_ignored() {
    let app = spawn_app().await;
    let form = Form::new()
        .text("description", "not a file")
        .part(
            "file",
            file_part("a.txt", b"abc".to_vec(), Some("text/plain")),
        )
        .text("after", "also ignored");
    let response = app.upload(form).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_form_without_a_file_part_is_missing_file() {
    let app = spawn_app().await;
    let form = Form::new()
        .text("file_description", "x")
        .part("document", file_part("a.txt", b"abc".to_vec(), None));
    assert_problem(app.upload(form).await, 400, "missing_file").await;
    let batch = app.upload_batch(Form::new().text("only", "text")).await;
    assert_problem(batch, 400, "missing_file").await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_multipart_is_rejected() {
    let app = spawn_app().await;
    let json = app
        .client
        .post(app.url("/upload"))
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(json, 415, "not_multipart").await;
    let none = app
        .client
        .post(app.url("/upload"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(none, 415, "not_multipart").await;
}

#[tokio::test]
async fn malformed_multipart_is_rejected_and_stores_nothing() {
    let app = spawn_app().await;
    let cases: [(&str, &[u8]); 4] = [
        ("multipart/form-data", b"--x\r\n\r\n"),
        (
            "multipart/form-data; boundary=XYZ",
            b"this is not multipart at all",
        ),
        (
            "multipart/form-data; boundary=XYZ",
            b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
        ),
        (
            "multipart/form-data; boundary=XYZ",
            b"--XYZ\r\nno-colon-header\r\n\r\nabc\r\n--XYZ--\r\n",
        ),
    ];
    for (content_type, body) in cases {
        let response = app
            .client
            .post(app.url("/upload"))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "malformed_multipart").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("malformed multipart")
        );
    }
    app.assert_consistent().await;
    assert!(app.row_ids().await.is_empty());
}

#[tokio::test]
async fn a_second_file_part_is_too_many_files() {
    let app = spawn_app().await;
    let form = Form::new()
        .part("file", file_part("a.txt", b"a".to_vec(), None))
        .part("file", file_part("b.txt", b"b".to_vec(), None));
    assert_problem(app.upload(form).await, 413, "too_many_files").await;
    assert!(app.assert_consistent().await.is_empty());
}

/// The raw answer to an upload that announces `file_bytes` but sends only the first `sent`
/// bytes of its body: an answer at all proves the server gave it before the body was sent.
async fn answer_before_the_body(
    app: &crate::helpers::TestApp,
    file_bytes: usize,
    sent: usize,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut upload = crate::child::RawUpload::start(app.host(), file_bytes, sent).await;
    let mut response = Vec::new();
    upload.stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_file_over_the_limit_is_413_while_streaming_and_leaves_nothing() {
    let app = spawn_app_with(|s| s.upload.max_file_bytes = 1024 * 1024).await;
    // 64 times the limit announced, twice the limit sent: the rest never comes.
    let response = answer_before_the_body(&app, 64 * 1024 * 1024, 2 * 1024 * 1024).await;

    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#""code":"file_too_large""#),
        "{response}"
    );
    assert!(
        response.contains("file exceeds the 1048576-byte limit"),
        "{response}"
    );
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_file_of_exactly_the_limit_is_accepted() {
    let app = spawn_app_with(|s| s.upload.max_file_bytes = NOT_INLINE as u64).await;
    let bytes = random_bytes(NOT_INLINE, 3);
    let response = app.upload_file("edge.bin", bytes.clone(), None).await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["size"], NOT_INLINE);
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    let id = body["id"].as_str().unwrap();
    let stored = app.get(&format!("/files/{id}/content")).await;
    assert_eq!(stored.bytes().await.unwrap(), bytes);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn a_request_declared_over_the_limit_is_refused_before_reading() {
    let app = spawn_app_with(|s| s.upload.max_request_bytes = 64 * 1024).await;
    // Not one byte of the body is sent.
    let response = answer_before_the_body(&app, 1024 * 1024, 0).await;

    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#""code":"request_too_large""#),
        "{response}"
    );
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn a_chunked_request_over_the_limit_is_stopped_while_streaming() {
    use futures_util::{StreamExt, stream};
    let app = spawn_app_with(|s| s.upload.max_request_bytes = 256 * 1024).await;
    // A streamed part has no length, so the request goes out chunked, without Content-Length;
    // after 1 MiB it never ends, so only an answer given while streaming can arrive.
    let endless = stream::iter(vec![Ok::<_, std::io::Error>(random_bytes(1024 * 1024, 5))])
        .chain(stream::pending());
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(endless))
        .file_name("endless.bin");
    let response = app.upload(Form::new().part("file", part)).await;
    assert_problem(response, 413, "request_too_large").await;
    app.uploads_settled().await;
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn hostile_filenames_are_made_safe_and_never_used_as_paths() {
    let app = spawn_app().await;
    let long = "a".repeat(1000) + ".txt";
    let cases = [
        ("../../etc/passwd", "passwd".to_owned()),
        (r"..\..\windows\system32\cmd.exe", "cmd.exe".to_owned()),
        ("日本語 résumé.pdf", "日本語 résumé.pdf".to_owned()),
        ("..", "unnamed".to_owned()),
        (long.as_str(), format!("{}.txt", "a".repeat(251))),
    ];
    // Each name with bytes kept in Postgres and with an object in storage.
    for size in [1, NOT_INLINE] {
        for (raw, expected) in &cases {
            let response = app
                .upload_file(raw, random_bytes(size, 9), Some("text/plain"))
                .await;
            assert_eq!(response.status(), 201, "{raw:?}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["filename"], expected.as_str(), "{raw:?}");
        }
    }
    // Every object sits at its id's place, and nothing was written anywhere else under the
    // storage root (or the bucket's prefix).
    assert_eq!(app.assert_consistent().await.len(), 2 * cases.len());
    assert_eq!(app.object_ids().await.len(), cases.len());
}

/// Sends one `file` part whose Content-Disposition parameters are written out verbatim.
async fn upload_with_disposition(
    app: &crate::helpers::TestApp,
    params: &[u8],
) -> reqwest::Response {
    let mut body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; ".to_vec();
    body.extend_from_slice(params);
    body.extend_from_slice(b"\r\nContent-Type: text/plain\r\n\r\nabc\r\n--B--\r\n");
    post_form(app, body).await
}

/// `POST /upload` of a body written out by hand, with boundary `B`.
async fn post_form(app: &crate::helpers::TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/upload"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn control_characters_in_names_are_refused_raw_and_removed_when_encoded() {
    let app = spawn_app().await;
    // Raw control bytes make the part header invalid.
    for raw in [
        &b"filename=\"nul\0byte.txt\""[..],
        b"filename=\"bell\x07\x1b.txt\"",
    ] {
        let response = upload_with_disposition(&app, raw).await;
        assert_problem(response, 400, "malformed_multipart").await;
    }
    // Percent-encoded in `filename*` (RFC 5987) they decode, and are dropped from the name.
    let encoded = upload_with_disposition(
        &app,
        b"filename=\"fallback.txt\"; filename*=UTF-8''a%00b%0D%0Ac%1B%E2%80%AEd.txt",
    )
    .await;
    assert_eq!(encoded.status(), 201);
    let body: serde_json::Value = encoded.json().await.unwrap();
    assert_eq!(
        body["filename"], "abcd.txt",
        "filename* wins and is cleaned"
    );
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn an_undeclared_content_type_is_sniffed_from_the_first_bytes() {
    let app = spawn_app().await;
    let png = app
        .upload_file("pixel", PNG.to_vec(), Some("application/octet-stream"))
        .await;
    let png: serde_json::Value = png.json().await.unwrap();
    assert_eq!(png["content_type"], "image/png");

    let raw = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes\"\r\n\r\nplain words\r\n--B--\r\n";
    let text = app
        .client
        .post(app.url("/upload"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(raw.to_vec())
        .send()
        .await
        .unwrap();
    let text: serde_json::Value = text.json().await.unwrap();
    assert_eq!(text["content_type"], "text/plain; charset=utf-8");

    let declared = app
        .upload_file("x.png", PNG.to_vec(), Some("image/x-custom"))
        .await;
    let declared: serde_json::Value = declared.json().await.unwrap();
    assert_eq!(
        declared["content_type"], "image/x-custom",
        "a declared type is kept"
    );
}

#[tokio::test]
async fn types_outside_the_allow_list_are_415_and_leave_nothing() {
    let app = spawn_app_with(|s| s.upload.allowed_content_types = vec!["image/*".into()]).await;
    let declared = app
        .upload_file("a.txt", b"text".to_vec(), Some("text/plain"))
        .await;
    assert_problem(declared, 415, "unsupported_media_type").await;
    let sniffed = app
        .upload_file(
            "a.bin",
            random_bytes(100_000, 6),
            Some("application/octet-stream"),
        )
        .await;
    assert_problem(sniffed, 415, "unsupported_media_type").await;
    let png = app.upload_file("p.png", PNG.to_vec(), None).await;
    assert_eq!(png.status(), 201);
    assert_eq!(app.assert_consistent().await.len(), 1);
}

/// One `file` part named `a.bin` with this part Content-Type and content, sent raw.
async fn upload_typed(
    app: &crate::helpers::TestApp,
    part_type: &str,
    content: &[u8],
) -> reqwest::Response {
    let mut body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: {part_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\r\n--B--\r\n");
    post_form(app, body).await
}

#[tokio::test]
async fn a_declared_type_without_a_subtype_is_sniffed_and_checked() {
    let app = spawn_app_with(|s| s.upload.allowed_content_types = vec!["image/*".into()]).await;
    for declared in ["image/", "image/*"] {
        let text = upload_typed(&app, declared, b"not an image at all").await;
        assert_problem(text, 415, "unsupported_media_type").await;
    }
    let png = upload_typed(&app, "image/", PNG).await;
    let png: serde_json::Value = png.json().await.unwrap();
    assert_eq!(png["content_type"], "image/png");
    assert_eq!(app.assert_consistent().await.len(), 1);
}

#[tokio::test]
async fn only_multipart_form_data_is_a_form() {
    let app = spawn_app().await;
    let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc\r\n--B--\r\n";
    for content_type in [
        "multipart/mixed; boundary=B",
        "multipart/related; boundary=B",
    ] {
        for path in ["/upload", "/files"] {
            let response = app
                .client
                .post(app.url(path))
                .header("content-type", content_type)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_problem(response, 415, "not_multipart").await;
        }
    }
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn an_iso_8859_1_filename_star_is_decoded() {
    let app = spawn_app().await;
    let response = upload_with_disposition(&app, b"filename*=iso-8859-1''r%E9sum%E9%A0.txt").await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["filename"], "résumé\u{a0}.txt");
}

/// The head of an upload that asks `Expect: 100-continue` before sending its body.
fn expecting_head(app: &crate::helpers::TestApp, length: usize) -> String {
    format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nExpect: 100-continue\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {length}\r\n\r\n",
        app.host()
    )
}

#[tokio::test]
async fn expect_continue_over_the_limit_is_413_without_a_100_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.upload.max_request_bytes = 64 * 1024).await;
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    stream
        .write_all(expecting_head(&app, 1024 * 1024).as_bytes())
        .await
        .unwrap();

    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#""code":"request_too_large""#),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("x-request-id: "),
        "{response}"
    );
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn expect_continue_within_the_limit_is_told_to_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"e.txt\"\r\n\r\nexpected\r\n--B--\r\n";
    let mut stream = tokio::net::TcpStream::connect(app.host()).await.unwrap();
    stream
        .write_all(expecting_head(&app, body.len()).as_bytes())
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(app.assert_consistent().await.len(), 1);
}

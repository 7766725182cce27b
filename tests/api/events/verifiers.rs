//! The README's signature verifiers (Python and JavaScript, README → Events), run as written
//! against a request intake sent: they accept it, and refuse it with one byte of the body
//! changed.

use std::path::Path;

use reqwest::multipart::Form;

use super::{Endpoint, Received, SECRET, delivering_to};
use crate::helpers::{file_part, may_skip, spawn_app_with};

/// The README's fenced block of `language` that defines `definition`.
fn readme_block(language: &str, definition: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    readme
        .split(&format!("```{language}\n"))
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .find(|block| block.contains(definition))
        .unwrap_or_else(|| panic!("the README shows no {language} block with `{definition}`"))
        .to_owned()
}

async fn received_event() -> Received {
    let mut endpoint = Endpoint::start(|_| 204).await;
    let app = spawn_app_with(delivering_to(&endpoint)).await;
    let form = Form::new().part("file", file_part("v.txt", b"verify me".to_vec(), None));
    assert_eq!(app.upload(form).await.status(), 201);
    endpoint.next().await
}

/// Runs `program` with the request's headers (JSON) and body in files; its output.
async fn run(program: &str, script: String, received: &Received) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let (headers, body) = (dir.path().join("headers.json"), dir.path().join("body"));
    std::fs::write(&headers, serde_json::to_vec(&received.headers).unwrap()).unwrap();
    std::fs::write(&body, &received.body).unwrap();
    let output = tokio::process::Command::new(program)
        .arg("-")
        .arg(&headers)
        .arg(&body)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = output else {
        may_skip(&format!("{program} is not installed"));
        return None;
    };
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    Some(String::from_utf8(output.stdout).unwrap())
}

#[tokio::test]
async fn the_readmes_verifiers_accept_what_intake_signs_and_nothing_else() {
    let received = received_event().await;
    let python = readme_block("python", "def verify(")
        + &format!(
            r#"
import json, sys
headers = json.load(open(sys.argv[1]))
body = open(sys.argv[2], "rb").read()
print(verify("{SECRET}", headers, body))
print(verify("{SECRET}", headers, body[:-1] + b" "))
"#
        );
    if let Some(out) = run("python3", python, &received).await {
        assert_eq!(out, "True\nFalse\n");
    }
    let js = readme_block("js", "function verify(")
        + &format!(
            r#"
const fs = require("node:fs");
const headers = JSON.parse(fs.readFileSync(process.argv[2]));
const body = fs.readFileSync(process.argv[3]);
console.log(verify("{SECRET}", headers, body));
const changed = Buffer.concat([body.subarray(0, body.length - 1), Buffer.from(" ")]);
console.log(verify("{SECRET}", headers, changed));
"#
        );
    if let Some(out) = run("node", js, &received).await {
        assert_eq!(out, "true\nfalse\n");
    }
}

//! Real tus clients against the server: tuspy (PyPI) and tus-js-client under Node (npm), each
//! interrupted after its first chunk on one instance and resumed on another, with a token;
//! tus-js-client also speaking the IETF resumable-upload draft. `.ci/run` installs both under
//! `target/tus-clients` (see `tests/clients/`).

use std::path::Path;

use tokio::process::Command;

use time::format_description::well_known::Rfc3339;

use crate::{
    helpers::{TestApp, installed, random_bytes, sha256_hex, spawn_app_with},
    tus::assert_nothing_resumable_left,
    upload_links::{secret_of, upload_link},
};

const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy)]
enum Client {
    Tuspy,
    TusJs,
}

impl Client {
    /// The client's driver script, or `None` where the client is not installed (a developer's
    /// machine; under `CI` that fails).
    fn command(self) -> Option<Command> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let clients = root.join("target/tus-clients");
        let scripts = root.join("tests/clients");
        match self {
            Self::Tuspy => {
                let python = clients.join("venv/bin/python");
                installed(&python)?;
                let mut command = Command::new(python);
                command.arg(scripts.join("tuspy_upload.py"));
                Some(command)
            }
            Self::TusJs => {
                let modules = clients.join("node/node_modules");
                installed(&modules.join("tus-js-client"))?;
                let mut command = Command::new("node");
                command
                    .arg(scripts.join("tus_js_upload.mjs"))
                    .env("TUS_JS_MODULES", modules);
                Some(command)
            }
        }
    }

    /// Runs one step of the driver, with its environment variables `env`; returns the upload
    /// URL it prints.
    async fn run_with(
        self,
        env: &[(&str, &str)],
        step: &str,
        at: &str,
        file: &Path,
        chunk: usize,
        token: &str,
    ) -> String {
        let output = self
            .command()
            .expect("checked by the test")
            .envs(env.iter().copied())
            .args([step, at])
            .arg(file)
            .args([&chunk.to_string(), token])
            .output()
            .await
            .expect("the client runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{step} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout.trim().lines().last().unwrap_or_default().to_owned()
    }
}

/// The resumable protocol a client speaks.
#[derive(Clone, Copy)]
enum Protocol {
    Tus,
    Ietf,
}

impl Protocol {
    fn endpoint(self) -> &'static str {
        match self {
            Self::Tus => "/tus/",
            Self::Ietf => "/resumable/",
        }
    }

    /// What tells tus-js-client to speak it.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Tus => &[],
            Self::Ietf => &[("TUS_PROTOCOL", "ietf-draft-05")],
        }
    }

    /// How far the upload at `path` is, asked with HEAD as this protocol asks it.
    async fn offset(self, app: &TestApp, token: &str, path: &str) -> u64 {
        let head = app.client.head(app.url(path)).bearer_auth(token);
        let (head, status) = match self {
            Self::Tus => (head.header("Tus-Resumable", "1.0.0"), 200),
            Self::Ietf => (head.header("Upload-Draft-Interop-Version", "8"), 204),
        };
        let response = head.send().await.unwrap();
        assert_eq!(response.status(), status);
        response.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

async fn interrupted_then_resumed_on_another_instance(
    client: Client,
    protocol: Protocol,
    chunk: usize,
) {
    if client.command().is_none() {
        return;
    }
    let first = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = first.user_with_token("ada").await;
    let second = first.another_instance(|s| s.auth.enabled = true).await;
    let bytes = random_bytes(5 * MIB + 123, 7);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let env = protocol.env();

    let endpoint = first.url(protocol.endpoint());
    let url = client
        .run_with(env, "start", &endpoint, file.path(), chunk, &token)
        .await;
    let path = url
        .strip_prefix(&first.address)
        .expect("an upload on the first");
    assert_eq!(
        protocol.offset(&first, &token, path).await,
        chunk as u64,
        "interrupted after a chunk"
    );
    let elsewhere = second.url(path);
    let resumed = client
        .run_with(env, "resume", &elsewhere, file.path(), chunk, &token)
        .await;

    assert_eq!(resumed, elsewhere);
    let id = path.trim_start_matches(protocol.endpoint());
    let file: serde_json::Value = first
        .get_as(&token, &format!("/files/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(file["sha256"], sha256_hex(&bytes));
    assert_eq!(file["size"], bytes.len());
    assert_nothing_resumable_left(&first).await;
}

#[tokio::test]
async fn tuspy_resumes_on_another_instance() {
    interrupted_then_resumed_on_another_instance(Client::Tuspy, Protocol::Tus, 2 * MIB).await;
}

#[tokio::test]
async fn tus_js_client_resumes_on_another_instance() {
    interrupted_then_resumed_on_another_instance(Client::TusJs, Protocol::Tus, MIB).await;
}

/// tus-js-client's `protocol: 'ietf-draft-05'` (interop version 6, accepted as 8's requests).
#[tokio::test]
async fn tus_js_client_speaking_the_ietf_draft_resumes_on_another_instance() {
    interrupted_then_resumed_on_another_instance(Client::TusJs, Protocol::Ietf, MIB).await;
}

/// What a client reports as stored is stored: its upload, sent whole, is a file of its bytes.
async fn sent_whole(
    client: Client,
    bytes: &[u8],
    env: &[(&str, &str)],
    customize: impl FnOnce(&mut intake::base::configuration::Settings),
) {
    if client.command().is_none() {
        return;
    }
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        customize(s);
    })
    .await;
    let token = app.user_with_token("ada").await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();

    let url = client
        .run_with(env, "whole", &app.url("/tus/"), file.path(), MIB, &token)
        .await;

    let id = url
        .strip_prefix(&app.url("/tus/"))
        .expect("an upload of this server");
    let stored: serde_json::Value = app
        .get_as(&token, &format!("/files/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["sha256"], sha256_hex(bytes));
    assert_eq!(stored["size"], bytes.len());
    assert_nothing_resumable_left(&app).await;
}

/// A client without a token, through an upload link: interrupted on one instance and resumed
/// on another; the file is the link's creator's, with the lifetime the client asked for.
async fn through_an_upload_link(client: Client, expires_in: &str) {
    if client.command().is_none() {
        return;
    }
    let first = crate::upload_links::app().await;
    let ada = first.user_with_token("ada").await;
    let second = first.another_instance(|s| s.auth.enabled = true).await;
    let link = upload_link(&first, &ada, serde_json::json!({"max_files": 1})).await;
    let secret = secret_of(&link);
    let env = [
        ("TUS_UPLOAD_LINK", secret.as_str()),
        ("TUS_EXPIRES_IN", expires_in),
    ];
    let bytes = random_bytes(3 * MIB + 7, 17);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();

    let url = client
        .run_with(&env, "start", &first.url("/tus/"), file.path(), MIB, "")
        .await;
    let path = url.strip_prefix(&first.address).expect("an upload here");
    let resumed = client
        .run_with(&env, "resume", &second.url(path), file.path(), MIB, "")
        .await;

    assert_eq!(resumed, second.url(path));
    let id = path.trim_start_matches("/tus/");
    let stored: serde_json::Value = first
        .get_as(&ada, &format!("/files/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["sha256"], sha256_hex(&bytes));
    assert_eq!(stored["upload_link"], link["id"]);
    let lives = |at: &serde_json::Value| {
        time::OffsetDateTime::parse(at.as_str().unwrap(), &Rfc3339).unwrap()
    };
    let lifetime = lives(&stored["expires_at"]) - lives(&stored["created_at"]);
    assert_eq!(lifetime, time::Duration::days(7));
    assert_nothing_resumable_left(&first).await;
}

#[tokio::test]
async fn tuspy_without_a_token_resumes_through_an_upload_link_on_another_instance() {
    through_an_upload_link(Client::Tuspy, "7d").await;
}

#[tokio::test]
async fn tus_js_client_without_a_token_resumes_through_an_upload_link_on_another_instance() {
    through_an_upload_link(Client::TusJs, "7d").await;
}

#[tokio::test]
async fn an_empty_file_from_tuspy_is_stored() {
    sent_whole(Client::Tuspy, b"", &[], |_| {}).await;
}

#[tokio::test]
async fn an_empty_file_from_tus_js_client_is_stored() {
    sent_whole(Client::TusJs, b"", &[], |_| {}).await;
}

#[tokio::test]
async fn tus_js_client_sending_patch_as_post_stores_its_file() {
    let bytes = random_bytes(2 * MIB + 5, 9);
    sent_whole(
        Client::TusJs,
        &bytes,
        &[("TUS_OVERRIDE_PATCH", "1")],
        |_| {},
    )
    .await;
}

/// `parallelUploads: 3`: three partial uploads at once, concatenated by a final upload into
/// one file with the SHA-256 of the whole; on disk, and in a bucket under `INTAKE_TEST_S3`
/// (each piece over S3's smallest part, so that the bucket copies them).
#[tokio::test]
async fn tus_js_client_sends_one_file_over_three_connections() {
    let bytes = random_bytes(16 * MIB + 12_345, 17);
    sent_whole(Client::TusJs, &bytes, &[("TUS_PARALLEL", "3")], |_| {}).await;
}

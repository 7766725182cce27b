//! Real tus clients against the server: tuspy (PyPI) and tus-js-client under Node (npm), each
//! interrupted after its first chunk on one instance and resumed on another, with a token.
//! `.ci/run` installs both under `target/tus-clients` (see `tests/clients/`).

use std::path::Path;

use tokio::process::Command;

use crate::{
    helpers::{installed, random_bytes, sha256_hex, spawn_app_with},
    tus::{Tus, assert_nothing_resumable_left},
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

    /// Runs one step of the driver; returns the upload URL it prints.
    async fn run(self, step: &str, at: &str, file: &Path, chunk: usize, token: &str) -> String {
        self.run_with(&[], step, at, file, chunk, token).await
    }

    /// As `run`, with the driver's environment variables `env`.
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

async fn interrupted_then_resumed_on_another_instance(client: Client, chunk: usize) {
    if client.command().is_none() {
        return;
    }
    let first = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = first.user_with_token("ada").await;
    let second = first.another_instance(|s| s.auth.enabled = true).await;
    let bytes = random_bytes(5 * MIB + 123, 7);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();

    let url = client
        .run("start", &first.url("/tus/"), file.path(), chunk, &token)
        .await;
    let path = url
        .strip_prefix(&first.address)
        .expect("an upload on the first");
    let tus = Tus::of(&first).with_token(&token);
    assert_eq!(
        tus.offset(path).await,
        chunk as u64,
        "interrupted after a chunk"
    );
    let elsewhere = second.url(path);
    let resumed = client
        .run("resume", &elsewhere, file.path(), chunk, &token)
        .await;

    assert_eq!(resumed, elsewhere);
    let id = path.trim_start_matches("/tus/");
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
    interrupted_then_resumed_on_another_instance(Client::Tuspy, 2 * MIB).await;
}

#[tokio::test]
async fn tus_js_client_resumes_on_another_instance() {
    interrupted_then_resumed_on_another_instance(Client::TusJs, MIB).await;
}

/// What a client reports as stored is stored: its upload, sent whole, is a file of its bytes.
async fn sent_whole(client: Client, bytes: &[u8], env: &[(&str, &str)]) {
    sent_whole_to(client, bytes, env, |_| {}).await;
}

async fn sent_whole_to(
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

#[tokio::test]
async fn an_empty_file_from_tuspy_is_stored() {
    sent_whole(Client::Tuspy, b"", &[]).await;
}

#[tokio::test]
async fn an_empty_file_from_tus_js_client_is_stored() {
    sent_whole(Client::TusJs, b"", &[]).await;
}

#[tokio::test]
async fn tus_js_client_sending_patch_as_post_stores_its_file() {
    let bytes = random_bytes(2 * MIB + 5, 9);
    sent_whole(Client::TusJs, &bytes, &[("TUS_OVERRIDE_PATCH", "1")]).await;
}

/// `parallelUploads: 3`: three partial uploads at once, concatenated by a final upload into
/// one file with the SHA-256 of the whole. Concatenation is the disk backend's (on S3 it is
/// refused: `s3::a_bucket_refuses_concatenation_and_does_not_announce_it`).
#[tokio::test]
async fn tus_js_client_sends_one_file_over_three_connections() {
    let bytes = random_bytes(5 * MIB + 12_345, 17);
    sent_whole_to(Client::TusJs, &bytes, &[("TUS_PARALLEL", "3")], |s| {
        s.storage.kind = intake::base::configuration::StorageKind::Fs;
    })
    .await;
}

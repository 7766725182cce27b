//! `intake upload`, the command-line tus client, run as a user runs it: the real binary against
//! the real server.

use std::{path::Path, process::Stdio};

use intake::base::configuration::StorageKind;
use serde_json::Value;
use tokio::process::Command;

use crate::{
    child::ChildServer,
    helpers::{random_bytes, reserved_port, sha256_hex, spawn_app, spawn_app_with},
    tus::{assert_nothing_resumable_left, wait_until_gone},
};

const MIB: usize = 1024 * 1024;

fn intake_upload(url: &str, state: &Path, files: &[&Path]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("upload")
        .args(files)
        .args(["--url", url, "--json", "--chunk-size", &MIB.to_string()])
        .arg("--state")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn remembered(state: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap()
}

#[tokio::test]
async fn intake_upload_sends_several_files_with_a_token_and_prints_them_as_json() {
    let app = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = app.user_with_token("ada").await;
    let dir = tempfile::tempdir().unwrap();
    let (big, small) = (random_bytes(3 * MIB + 5, 1), b"small\n".to_vec());
    let files = [
        write(dir.path(), "big.bin", &big),
        write(dir.path(), "small.txt", &small),
    ];
    let state = dir.path().join("state.json");

    let output = intake_upload(&app.address, &state, &[&files[0], &files[1]])
        .env("INTAKE_TOKEN", &token)
        .output()
        .await
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["filename"], "big.bin");
    assert_eq!(stored[0]["sha256"], sha256_hex(&big));
    assert_eq!(stored[1]["sha256"], sha256_hex(&small));
    assert_eq!(
        remembered(&state),
        serde_json::json!({}),
        "nothing left to resume"
    );
    assert_nothing_resumable_left(&app).await;

    let refused = intake_upload(&app.address, &state, &[&files[1]])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success(), "no token");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

#[tokio::test]
async fn an_interrupted_intake_upload_resumes_on_the_next_run_through_another_instance() {
    let db = spawn_app_with(|s| s.storage.kind = StorageKind::Fs).await;
    let mut first = ChildServer::start(&db.db_url(), db.storage.path(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = random_bytes(5 * MIB, 2);
    let file = write(dir.path(), "video.bin", &bytes);
    let state = dir.path().join("state.json");

    let client = intake_upload(&format!("http://{}", first.address), &state, &[&file])
        .args(["--retries", "1"])
        .spawn()
        .unwrap();
    // Killed while the third chunk is on its way: two are recorded.
    first
        .wait_for(|e| e["message"] == "receiving a PATCH" && e["offset"] == 2 * MIB)
        .await;
    first.child.kill().await.unwrap();
    let interrupted = client.wait_with_output().await.unwrap();
    assert!(!interrupted.status.success());
    let said = String::from_utf8_lossy(&interrupted.stderr);
    assert!(said.contains("run again to resume"), "{said}");
    let upload = remembered(&state);
    let path = upload.as_object().unwrap().values().next().unwrap();
    wait_until_gone(&db, path.as_str().unwrap()).await;

    let second = db
        .another_instance(|s| s.storage.kind = StorageKind::Fs)
        .await;
    let resumed = intake_upload(&second.address, &state, &[&file])
        .output()
        .await
        .unwrap();

    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{said}");
    assert!(
        said.contains(&format!("resuming at byte {} of {}", 2 * MIB, bytes.len())),
        "{said}"
    );
    let stored: Vec<Value> = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(stored[0]["sha256"], sha256_hex(&bytes));
    assert_eq!(remembered(&state), serde_json::json!({}));
    assert_nothing_resumable_left(&db).await;
}

#[tokio::test]
async fn a_refused_file_stops_the_run_with_the_servers_reason() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "huge.bin", &random_bytes(2 * MIB, 3));
    let small = spawn_app_with(|s| s.upload.max_file_bytes = MIB as u64).await;
    drop(app);

    let output = intake_upload(&small.address, &dir.path().join("s.json"), &[&file])
        .output()
        .await
        .unwrap();

    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("413") && said.contains("byte limit"),
        "{said}"
    );
}

#[tokio::test]
async fn a_folder_among_the_files_is_refused_before_anything_is_sent() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.txt", b"a\n");
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    let state = dir.path().join("state.json");

    let output = intake_upload(&app.address, &state, &[&file, &folder])
        .output()
        .await
        .unwrap();

    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("is not a regular file"), "{said}");
    assert!(!said.contains("retrying"), "{said}");
    assert!(app.row_ids().await.is_empty(), "a file was stored");
    assert_nothing_resumable_left(&app).await;
    assert!(!state.exists() || remembered(&state) == serde_json::json!({}));
}

#[tokio::test]
async fn without_a_terminal_progress_is_told_in_lines_and_no_server_configuration_is_read() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "big.bin", &random_bytes(3 * MIB + 5, 4));

    // An environment the server has no configuration for: the client needs none.
    let output = intake_upload(&app.address, &dir.path().join("s.json"), &[&file])
        .env("APP_ENVIRONMENT", "staging")
        .output()
        .await
        .unwrap();

    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"big.bin: 3145733 bytes to send"),
        "{said}"
    );
    for tenth in (10..=100).step_by(10) {
        let told = format!("big.bin: {tenth}% (");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&told)).count(),
            1,
            "{said}"
        );
    }
    assert_eq!(
        lines.last(),
        Some(&"big.bin: stored, 3145733 bytes"),
        "{said}"
    );
}

#[tokio::test]
async fn on_a_terminal_the_table_starts_on_a_line_of_its_own() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.bin", &random_bytes(2 * MIB, 5));
    let command = format!(
        "'{}' upload '{}' --url {} --state '{}'",
        env!("CARGO_BIN_EXE_intake"),
        file.display(),
        app.address,
        dir.path().join("s.json").display()
    );

    // `script` gives the client a terminal: its bar is drawn, then the table is printed.
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .await
        .unwrap();

    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    let header = shown.find("id  ").expect("the table's header");
    assert!(shown[..header].ends_with('\n'), "{shown:?}");
    assert!(shown.contains("a.bin: stored, 2097152 bytes"), "{shown:?}");
}

#[tokio::test]
async fn giving_up_tells_how_many_attempts_failed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.txt", b"a\n");
    let url = format!("http://127.0.0.1:{}", reserved_port());

    let output = intake_upload(&url, &dir.path().join("s.json"), &[&file])
        .args(["--retries", "0"])
        .output()
        .await
        .unwrap();

    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("after 1 failed attempt in a row"), "{said}");
}

#[tokio::test]
async fn intake_share_prints_a_link_that_downloads_without_a_token() {
    let app = spawn_app_with(|s| s.auth.enabled = true).await;
    let token = app.user_with_token("ada").await;
    let bytes = random_bytes(200_000, 3);
    let part = crate::helpers::file_part("handover.bin", bytes.clone(), None);
    let stored: Value = app.upload_as(&token, part).await.json().await.unwrap();
    let share = |file: &str, expires_in: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
        command
            .args([
                "share",
                file,
                "--expires-in",
                expires_in,
                "--max-downloads",
                "2",
            ])
            .args(["--url", &app.address, "--json"])
            .env("INTAKE_TOKEN", &token)
            .output()
    };

    let output = share(stored["id"].as_str().unwrap(), "1d").await.unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let link: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(link["max_downloads"], 2);
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/shared/", app.address)),
        "{url}"
    );
    let downloaded = reqwest::get(url).await.unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(
        sha256_hex(&downloaded.bytes().await.unwrap()),
        sha256_hex(&bytes)
    );

    // Refused in the server's words, and nothing printed on stdout.
    let refused = share(stored["id"].as_str().unwrap(), "forever")
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("422") && said.contains("expires_in"),
        "{said}"
    );
}

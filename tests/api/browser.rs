//! The page at `/` in a real browser (Debian's chromium, driven by playwright-core from npm:
//! tests/browser/page.mjs), against the real server. Screenshots go to target/browser-shots.

use std::{path::Path, process::Stdio};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::{
    child::ChildServer,
    helpers::{installed, random_bytes, reserved_port, sha256_hex, spawn_app, spawn_app_with},
};

const MIB: usize = 1024 * 1024;

/// A driver of tests/browser/ under Node with playwright-core (and axe-core), or `None` where
/// the browser or either package is missing.
fn driver(script: &str) -> Option<Command> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("target/browser/node_modules");
    installed(&modules.join("playwright-core"))?;
    installed(&modules.join("axe-core"))?;
    installed(Path::new("/usr/bin/chromium"))?;
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/browser").join(script))
        .env("PLAYWRIGHT_MODULES", modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Some(command)
}

/// The JSON line a driver prints once it has ended well.
async fn outcome(driver: Child) -> Value {
    let run = driver.wait_with_output().await.unwrap();
    assert!(
        run.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("one JSON line")
}

#[tokio::test]
async fn a_person_uploads_two_files_sees_a_refusal_downloads_and_deletes_in_a_browser() {
    let Some(mut driver) = driver("page.mjs") else {
        return;
    };
    let app = spawn_app_with(|settings| {
        settings.auth.enabled = true;
        settings.upload.max_file_bytes = 1024 * 1024;
        settings.auth.default_quota_bytes = 10 * 1024 * 1024;
    })
    .await;
    let token = app.user_with_token("alice").await;
    let files = tempfile::tempdir().unwrap();
    let one = b"hello from a browser\n".to_vec();
    let two = random_bytes(300_000, 7);
    std::fs::write(files.path().join("one.txt"), &one).unwrap();
    std::fs::write(files.path().join("two.bin"), &two).unwrap();
    let sent = b"from a visitor\n".to_vec();
    std::fs::write(files.path().join("sent.txt"), &sent).unwrap();
    std::fs::write(
        files.path().join("big.bin"),
        random_bytes(2 * 1024 * 1024, 8),
    )
    .unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-shots");
    std::fs::create_dir_all(&shots).unwrap();

    // What an operator runs to revoke the token mid-session (the only token in the database).
    let token_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let revoke = serde_json::json!([env!("CARGO_BIN_EXE_intake"), "tokens", "revoke", token_id]);
    let driver = driver
        .args([&app.address, &token])
        .args([files.path(), &shots])
        .env("REVOKE", revoke.to_string())
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", app.db_url())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .expect("node runs");
    let seen = outcome(driver).await;

    assert_eq!(
        seen["tabOrder"],
        serde_json::json!(["token", "Sign in", "keep-for"])
    );
    assert_eq!(
        seen["focusShown"],
        serde_json::json!(["solid", "solid", "solid"])
    );
    assert_eq!(seen["tokenInUrl"], false);
    assert_eq!(seen["progress"], serde_json::json!([100, 100]));
    let listed = seen["listed"].as_array().unwrap();
    assert!(listed.contains(&"one.txt".into()) && listed.contains(&"two.bin".into()));
    let refusal = seen["tooLarge"].as_str().unwrap();
    assert!(refusal.contains("the 1.0 MiB limit"), "{refusal}");
    assert_eq!(seen["tableBeforeSignIn"], false);
    assert_eq!(
        seen["withoutToken"],
        "Not stored: sign in with a token first."
    );
    let wrong = seen["wrongToken"].as_str().unwrap();
    assert!(
        wrong.contains("Not signed in: the bearer token is malformed, unknown, revoked or expired"),
        "{wrong}"
    );
    assert_eq!(
        seen["signOutAfterWrong"], false,
        "a refused token is not kept"
    );
    assert_eq!(seen["signedIn"], "Signed in as alice.");
    assert_eq!(
        seen["limits"],
        "Files up to 1.0 MiB · 10.0 MiB of your quota left."
    );
    assert_eq!(seen["retryShown"], true);
    // The batch: what arrived of all three files' bytes (the refused one sent none).
    let percent = (one.len() + two.len()) * 100 / (one.len() + two.len() + 2 * 1024 * 1024);
    assert_eq!(
        seen["overall"],
        format!("2 of 3 stored · {percent}% · 1 not stored")
    );
    assert_eq!(seen["rowsAfterClear"], 0);
    assert_eq!(seen["batchAfterClear"], false);
    assert_eq!(
        seen["notFound"],
        serde_json::json!([]),
        "no request the page makes is 404"
    );
    assert_eq!(seen["downloadedName"], "one.txt");
    assert_eq!(seen["downloadedSha256"], sha256_hex(&one));
    let label = seen["sharedLabel"].as_str().unwrap();
    assert!(
        label.starts_with("Anyone with this link can download one.txt until "),
        "{label}"
    );
    let url = seen["sharedUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/shared/", app.address)),
        "{url}"
    );
    assert_eq!(seen["sharedName"], "one.txt");
    assert_eq!(seen["sharedSha256"], sha256_hex(&one));
    let links = seen["linkList"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links[0].as_str().unwrap().contains("· 1 download "),
        "{links:?}"
    );
    assert!(
        links[1].as_str().unwrap().contains("· 0 downloads"),
        "{links:?}"
    );
    assert_eq!(seen["linksAfterRevoke"], 1);
    // The link left is the one made to last a day.
    let lasts: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM share_links",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((86_399.0..=86_401.0).contains(&lasts), "{lasts}");
    assert_eq!(
        seen["goes"],
        serde_json::json!(["when deleted", "when deleted"])
    );
    assert_eq!(seen["revokedStatus"], 404);
    let label = seen["requestedLabel"].as_str().unwrap();
    assert!(
        label.starts_with("Anyone with this link can send you up to 1 file until "),
        "{label}"
    );
    let url = seen["requestedUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/send/", app.address)), "{url}");
    let limits = seen["visitorLimits"].as_str().unwrap();
    assert!(
        limits.starts_with("Files up to 1.0 MiB · 1 more file · until "),
        "{limits}"
    );
    assert_eq!(seen["visitorSeesOwnersParts"], serde_json::json!([]));
    assert_eq!(
        seen["visitorRefused"],
        "Not stored: this upload link takes no more files (it allows 1)"
    );
    let received = seen["uploadLinks"].as_array().unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0]
            .as_str()
            .unwrap()
            .contains("· 1 of 1 files received"),
        "{received:?}"
    );
    assert_eq!(seen["afterDelete"], serde_json::json!(["one.txt"]));
    assert_eq!(
        seen["afterReload"],
        serde_json::json!(["sent.txt (sent through an upload link)", "one.txt"])
    );
    assert_eq!(seen["usage"], "Using 36 B of 10.0 MiB (10.0 MiB left).");
    assert_eq!(seen["overflow"], 0, "the page is wider than a phone");
    assert_eq!(seen["cspViolations"], serde_json::json!([]));
    assert_eq!(seen["accessibility"], serde_json::json!([]), "axe-core");
    assert_eq!(
        seen["accessibilityNarrow"],
        serde_json::json!([]),
        "axe-core"
    );
    assert_eq!(
        seen["revoked"],
        "Signed out: the bearer token is malformed, unknown, revoked or expired. Sign in again."
    );
    assert_eq!(seen["signOutAfterRevoke"], false);
    assert_eq!(
        seen["sentAfterRevoke"],
        "Not stored: sign in with a token first."
    );
    assert_eq!(seen["tableAfterRevoke"], false);

    // What the server holds agrees: two files, the right bytes; nothing of the refused ones.
    let token = app.token_for("alice", None).await;
    let page: Value = app.get_as(&token, "/files").await.json().await.unwrap();
    let stored = page["files"].as_array().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["sha256"], sha256_hex(&sent));
    assert!(stored[0]["upload_link"].is_string(), "{}", stored[0]);
    assert_eq!(stored[1]["sha256"], sha256_hex(&one));
    assert_eq!(app.assert_consistent().await.len(), 2);
}

#[tokio::test]
async fn an_upload_cut_by_a_server_restart_resumes_in_the_browser_and_completes() {
    let Some(mut driver) = driver("resume.mjs") else {
        return;
    };
    let db = spawn_app().await;
    let storage = tempfile::tempdir().unwrap();
    // The page talks to its own origin: the restarted server takes the same port.
    let port = reserved_port().to_string();
    let settings = [("APP__SERVER__PORT", port.as_str())];
    let mut server = ChildServer::start(&db.db_url(), storage.path(), &settings).await;
    let bytes = random_bytes(24 * MIB, 11);
    let file = storage.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let driver = driver
        .arg(server.url(""))
        .arg(&file)
        .spawn()
        .expect("node runs");

    // The page sends 8 MiB chunks: once the second is on its way, the server dies under it.
    server
        .wait_for(|e| e["message"] == "receiving a PATCH" && e["offset"] == 8 * MIB)
        .await;
    server.child.kill().await.unwrap();
    let mut restarted = ChildServer::start(&db.db_url(), storage.path(), &settings).await;
    let resumed = restarted
        .wait_for(|e| e["message"] == "receiving a PATCH")
        .await;
    assert_eq!(resumed["offset"], 8 * MIB, "the page did not resume");

    let seen = outcome(driver).await;
    assert_eq!(seen["state"], "100% · stored");
    assert_eq!(seen["progress"], 100);
    let page: Value = reqwest::get(restarted.url("/files"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["files"][0]["sha256"], sha256_hex(&bytes));
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
}

/// One 24 MiB upload through the page, interrupted as `mode` says (tests/browser/resume.mjs);
/// it must end as one file with its SHA-256 and no other upload begun. Returns what the page
/// said while it was interrupted.
async fn interrupted_in_the_page(mode: &str) -> Option<String> {
    let mut driver = driver("resume.mjs")?;
    let app = spawn_app().await;
    let folder = tempfile::tempdir().unwrap();
    let bytes = random_bytes(24 * MIB, 12);
    let file = folder.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();

    let driver = driver
        .arg(&app.address)
        .arg(&file)
        .arg(mode)
        .spawn()
        .expect("node runs");
    let seen = outcome(driver).await;

    assert_eq!(seen["state"], "100% · stored");
    let page: Value = app.get("/files").await.json().await.unwrap();
    assert_eq!(page["files"][0]["sha256"], sha256_hex(&bytes));
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
    crate::tus::assert_nothing_resumable_left(&app).await;
    Some(seen["waited"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_upload_that_loses_the_network_continues_when_the_browser_is_back_online() {
    if let Some(waited) = interrupted_in_the_page("offline").await {
        assert!(waited.starts_with("Waiting for the network"), "{waited}");
    }
}

#[tokio::test]
async fn an_upload_paused_in_the_page_resumes_as_the_same_upload() {
    if let Some(paused) = interrupted_in_the_page("pause").await {
        assert!(paused.starts_with("Paused at "), "{paused}");
    }
}

/// The README's Uppy snippets, run as written on a page of another origin (tests/browser/
/// uppy.mjs): through tus with a pause and a resume, and through `POST /upload`.
#[tokio::test]
async fn uppy_on_another_origin_uploads_pauses_resumes_and_shows_refusals_in_intakes_words() {
    let Some(mut driver) = driver("uppy.mjs") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if installed(&root.join("target/browser/node_modules/uppy/dist/uppy.min.mjs")).is_none() {
        return;
    }
    let page_port = reserved_port();
    let app = spawn_app_with(|s| {
        s.auth.enabled = true;
        s.upload.max_file_bytes = 16 * MIB as u64;
        s.http.cors.allowed_origins = vec![format!("http://127.0.0.1:{page_port}")];
    })
    .await;
    let token = app.user_with_token("ada").await;
    let files = tempfile::tempdir().unwrap();
    let contents = [
        ("a.txt", b"from a web app\n".to_vec()),
        ("b.bin", random_bytes(300_000, 21)),
        ("large.bin", random_bytes(12 * MIB, 22)),
        ("over.bin", random_bytes(17 * MIB, 23)),
    ];
    for (name, bytes) in &contents {
        std::fs::write(files.path().join(name), bytes).unwrap();
    }
    let shots = root.join("target/browser-shots");
    std::fs::create_dir_all(&shots).unwrap();

    let driver = driver
        .args([&app.address, &token, &page_port.to_string()])
        .arg(root.join("README.md"))
        .arg(files.path())
        .arg("large.bin")
        .args(contents.iter().map(|(name, _)| name))
        .env("SHOTS", &shots)
        .spawn()
        .expect("node runs");
    let seen = outcome(driver).await;

    let limit = format!("file exceeds the {}-byte limit", 16 * MIB);
    let by_name = |mode: &str, name: &str| -> Value {
        seen[mode]
            .as_array()
            .unwrap()
            .iter()
            .find(|file| file["name"] == name)
            .unwrap_or_else(|| panic!("{mode}: no {name} in {seen}"))
            .clone()
    };
    for (mode, names) in [
        ("tus", &["a.txt", "b.bin", "large.bin"][..]),
        ("xhr", &["a.txt", "b.bin"]),
    ] {
        for name in names {
            let file = by_name(mode, name);
            assert_eq!(file["percentage"], 100, "{mode} {name}: {file}");
            assert_eq!(file["complete"], true, "{mode} {name}: {file}");
            assert_eq!(file["error"], Value::Null, "{mode} {name}: {file}");
        }
        let over = by_name(mode, "over.bin");
        assert!(
            over["error"].as_str().is_some_and(|e| e.contains(&limit)),
            "{mode}: {over}"
        );
    }
    assert_eq!(
        by_name("xhr", "over.bin")["error"],
        limit.as_str(),
        "the detail, as intake wrote it"
    );
    // Paused part of the way, and resumed as the same upload, not sent again from the start.
    let paused = &seen["paused"];
    assert_eq!(paused["isPaused"], true, "{paused}");
    assert!(paused["percentage"].as_f64().unwrap() < 100.0, "{paused}");
    assert_eq!(
        paused["uploadUrl"],
        by_name("tus", "large.bin")["uploadUrl"]
    );
    assert_eq!(seen["pageErrors"], serde_json::json!([]));

    // What intake holds: every file that Uppy says arrived, with its bytes; nothing of the
    // refused one, and nothing resumable left.
    let page: Value = app
        .get_as(&token, "/files?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let mut stored: Vec<(String, String)> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    stored.sort();
    let mut expected: Vec<(String, String)> = ["a.txt", "a.txt", "b.bin", "b.bin", "large.bin"]
        .iter()
        .map(|name| {
            let bytes = &contents.iter().find(|(n, _)| n == name).unwrap().1;
            ((*name).to_owned(), sha256_hex(bytes))
        })
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    crate::tus::assert_nothing_resumable_left(&app).await;
    assert_eq!(app.assert_consistent().await.len(), 5);
}

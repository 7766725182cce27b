//! Schemathesis (PyPI) against a running intake, with the document it serves: every route,
//! valid and invalid requests, status codes, content types, headers and response bodies
//! checked against the document. `.ci/run` installs it under target/schemathesis. And the
//! document itself, served and committed, checked by openapi-spec-validator (PyPI, under
//! target/openapi-validator): Schemathesis forgives a document much that client generators stop at.

use std::{path::Path, process::Command};

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::helpers::{installed, spawn_app_with};

#[tokio::test]
async fn the_server_conforms_to_its_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemathesis = root.join("target/schemathesis/venv/bin/schemathesis");
    if installed(&schemathesis).is_none() {
        return;
    }
    // /external calls a third party: a stand-in that answers.
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message": "pong"})))
        .mount(&upstream)
        .await;
    let app = spawn_app_with(|settings| {
        settings.auth.enabled = true;
        // Thousands of requests from one client: no rate limit, and no waits that would only
        // make the run longer (the document carries these limits, so nothing longer is sent).
        settings.rate_limit.per_minute = 0;
        settings.checkout.payment.simulated_latency_ms = 0;
        settings.checkout.email.simulated_latency_ms = 0;
        settings.lessons.slow_max_ms = 20;
        settings.lessons.blocking_max_ms = 20;
        // A share link's lifetime is bounded by the operator, which the document cannot say:
        // unbounded here, every lifetime the document allows is accepted.
        settings.sharing.max_expiry_secs = 0;
        settings.lessons.external_url = format!("{}/ping", upstream.uri());
    })
    .await;
    let token = app.user_with_token("schemathesis").await;

    let (document, config) = (app.url("/openapi.json"), root.join("tests/schemathesis"));
    // Run from target/: Schemathesis keeps a cache in its working directory.
    let mut command = Command::new(schemathesis);
    command
        .current_dir(root.join("target/schemathesis"))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &config)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("--config-file")
        .arg(config.join("schemathesis.toml"))
        .args(["--no-color", "run"])
        .arg(document)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // A fixed seed: the same cases on every run, so that CI does not fail on a case it
        // never generated before (run without it to look for new ones).
        .args(["--max-examples", "50", "--seed", "1"]);
    let report = succeeded(command, "schemathesis found failures").await;
    assert!(report.contains("Tested: "), "{report}");
}

#[tokio::test]
async fn the_served_and_the_committed_documents_are_valid_openapi_3_1() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let validator = root.join("target/openapi-validator/venv/bin/openapi-spec-validator");
    if installed(&validator).is_none() {
        return;
    }
    let app = spawn_app_with(|settings| settings.auth.enabled = true).await;
    let served = app.get("/openapi.json").await.text().await.unwrap();
    let folder = tempfile::tempdir().unwrap();
    let served_path = folder.path().join("served.json");
    std::fs::write(&served_path, served).unwrap();

    let mut command = Command::new(validator);
    command
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(&served_path)
        .arg(root.join("docs/openapi.json"));
    let report = succeeded(command, "the document is not valid").await;
    assert_eq!(report.matches(": OK").count(), 2, "{report}");
}

/// Runs `command` off the test's threads; its output, once it has exited with success.
async fn succeeded(mut command: Command, failed: &str) -> String {
    let run = tokio::task::spawn_blocking(move || command.output().expect("the tool runs"))
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    let errors = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{failed}:\n{report}\n{errors}");
    report
}

//! Lifetimes asked for at the upload: the multipart `expires_in` field (anywhere in the form),
//! tus `Upload-Metadata` `expires_in`, and `upload.default_lifetime_secs` when an upload names
//! none. Each is counted from the commit; one not valid refuses the upload and keeps nothing.

use base64::Engine;
use reqwest::multipart::Form;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    helpers::{TestApp, assert_invalid_field, assert_problem, file_part, spawn_app_with},
    tus::{Tus, header},
};

fn settings(s: &mut intake::base::configuration::Settings) {
    s.auth.enabled = true;
    s.upload.max_lifetime_secs = 30 * 86_400;
}

fn at(file: &Value, key: &str) -> Option<OffsetDateTime> {
    file[key]
        .as_str()
        .map(|text| OffsetDateTime::parse(text, &Rfc3339).unwrap())
}

/// How long `file` lives from its creation (`None`: until deleted).
fn lifetime(file: &Value) -> Option<Duration> {
    at(file, "expires_at").map(|ends| ends - at(file, "created_at").unwrap())
}

async fn send(app: &TestApp, token: &str, path: &str, form: Form) -> reqwest::Response {
    let request = app.client.post(app.url(path)).bearer_auth(token);
    request.multipart(form).send().await.unwrap()
}

fn two_files(form: Form) -> Form {
    form.part("a", file_part("a.txt", b"one".to_vec(), None))
        .part("b", file_part("b.txt", b"two".to_vec(), None))
}

async fn file_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM files")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn tus_metadata(pairs: &[(&str, &str)]) -> String {
    let encode = |value: &str| base64::engine::general_purpose::STANDARD.encode(value);
    let pairs: Vec<_> = pairs
        .iter()
        .map(|(key, value)| format!("{key} {}", encode(value)))
        .collect();
    pairs.join(",")
}

#[tokio::test]
async fn an_expires_in_field_gives_each_file_its_lifetime_from_the_commit() {
    let app = spawn_app_with(settings).await;
    let token = app.user_with_token("ada").await;

    let batch = send(
        &app,
        &token,
        "/files",
        two_files(Form::new().text("expires_in", "2d")),
    )
    .await;
    assert_eq!(batch.status(), 201);
    let batch: Value = batch.json().await.unwrap();
    let files = batch["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for file in files {
        assert_eq!(lifetime(file), Some(Duration::days(2)), "{file}");
        assert_eq!(file["upload_link"], Value::Null);
    }

    // After the file too: the files are committed once the whole form is read.
    let form = Form::new()
        .part("file", file_part("c.txt", b"three".to_vec(), None))
        .text("expires_in", " 90m ");
    let one: Value = send(&app, &token, "/upload", form)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lifetime(&one), Some(Duration::minutes(90)));
    let shown: Value = app
        .get_as(&token, &format!("/files/{}", one["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["expires_at"], one["expires_at"]);

    // Without the field and without a default, the bound: no file outlives it.
    let plain = app.upload_as(&token, file_part("d.txt", b"four".to_vec(), None));
    let plain: Value = plain.await.json().await.unwrap();
    assert_eq!(lifetime(&plain), Some(Duration::days(30)));
}

#[tokio::test]
async fn an_expires_in_field_not_valid_or_twice_keeps_nothing() {
    let app = spawn_app_with(settings).await;
    let token = app.user_with_token("ada").await;

    let forms = [
        ("31d", two_files(Form::new().text("expires_in", "31d"))),
        ("soon", two_files(Form::new().text("expires_in", "soon"))),
        ("empty", two_files(Form::new().text("expires_in", ""))),
        (
            "twice",
            two_files(
                Form::new()
                    .text("expires_in", "1d")
                    .text("expires_in", "2d"),
            ),
        ),
        (
            "twice, around the files",
            two_files(Form::new().text("expires_in", "1d")).text("expires_in", "1d"),
        ),
    ];
    for (case, form) in forms {
        let refused = send(&app, &token, "/files", form).await;
        assert_invalid_field(refused, "expires_in", &json!(case)).await;
    }
    let late = Form::new()
        .part("file", file_part("c.txt", b"three".to_vec(), None))
        .text("expires_in", "9999w");
    let refused = send(&app, &token, "/upload", late).await;
    assert_invalid_field(refused, "expires_in", &json!("9999w, /upload")).await;

    assert_eq!(file_rows(&app).await, 0);
    assert!(app.assert_consistent().await.is_empty());
}

#[tokio::test]
async fn an_upload_that_names_no_lifetime_gets_the_default_on_every_protocol() {
    let app = spawn_app_with(|s| {
        settings(s);
        s.upload.default_lifetime_secs = 86_400;
    })
    .await;
    let token = app.user_with_token("ada").await;

    let plain: Value = app
        .upload_as(&token, file_part("a.txt", b"one".to_vec(), None))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lifetime(&plain), Some(Duration::days(1)));

    // tus: the default when the metadata names none, the metadata's own when it does.
    let tus = Tus::of(&app).with_token(&token);
    for (metadata, expected) in [
        (tus_metadata(&[("filename", "b.txt")]), Duration::days(1)),
        (
            tus_metadata(&[("filename", "c.txt"), ("expires_in", "3h")]),
            Duration::hours(3),
        ),
    ] {
        let created = tus
            .request(reqwest::Method::POST, "/tus/")
            .header("Upload-Length", 3)
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let path = header(&created, "location");
        assert_eq!(tus.patch(&path, 0, b"two".to_vec()).await.status(), 204);
        let file: Value = app
            .get_as(&token, &path.replace("/tus/", "/files/"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(lifetime(&file), Some(expected), "{file}");
    }
}

#[tokio::test]
async fn a_tus_lifetime_not_valid_refuses_the_creation() {
    let app = spawn_app_with(settings).await;
    let token = app.user_with_token("ada").await;
    let tus = Tus::of(&app).with_token(&token);

    for asked in ["31d", "forever", "0s"] {
        let created = tus
            .request(reqwest::Method::POST, "/tus/")
            .header("Upload-Length", 3)
            .header("Upload-Metadata", tus_metadata(&[("expires_in", asked)]))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(created, 400, "invalid_request").await;
        assert!(
            problem["detail"].to_string().contains("expires_in"),
            "{problem}"
        );
    }
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM resumable_uploads")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(unfinished, 0);
}

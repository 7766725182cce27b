//! Start-up failures name the thing to fix: the database's address and role, the listen
//! address, the storage path; and each cause is told once.

use intake::{
    base::{configuration::Settings, telemetry::cause_chain},
    startup::Application,
};
use secrecy::SecretString;

use crate::helpers::{reserved_port, spawn_app, test_settings};

/// What `intake serve` would print, given these settings.
async fn start_up_failure(settings: Settings) -> String {
    match Application::build(settings).await {
        Ok(_) => panic!("the application started"),
        Err(error) => cause_chain(&error),
    }
}

/// Settings for this test's own database (made by `spawn_app`), on a free port.
fn settings_for(db_url: String) -> Settings {
    let mut settings = test_settings();
    settings.database.url = SecretString::from(db_url);
    settings.server.port = 0;
    settings
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_with_its_address_role_and_cause() {
    let port = reserved_port();
    let settings = settings_for(format!("postgres://someone:pw@127.0.0.1:{port}/files"));

    let failure = start_up_failure(settings).await;

    assert!(
        failure.contains(&format!("Postgres at 127.0.0.1:{port}")),
        "{failure}"
    );
    assert!(
        failure.contains("as role `someone`, database `files`"),
        "{failure}"
    );
    assert!(failure.contains("APP__DATABASE__URL"), "{failure}");
    assert!(!failure.contains("at line"), "{failure}");
    assert_eq!(
        failure.matches("Connection refused").count(),
        1,
        "{failure}"
    );
}

#[tokio::test]
async fn a_role_postgres_refuses_is_named_in_postgres_words() {
    let app = spawn_app().await;
    let mut url = reqwest::Url::parse(&app.db_url()).unwrap();
    url.set_username("no_such_role").unwrap();

    let failure = start_up_failure(settings_for(url.to_string())).await;

    assert!(failure.contains("as role `no_such_role`"), "{failure}");
    assert!(
        failure.contains(r#"role "no_such_role" does not exist"#) && !failure.contains("at line"),
        "{failure}"
    );
}

#[tokio::test]
async fn an_address_in_use_is_named() {
    let app = spawn_app().await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let mut settings = settings_for(app.db_url());
    settings.server.port = port;
    settings.storage.root = storage.path().to_owned();

    let failure = start_up_failure(settings).await;

    assert!(
        failure.starts_with(&format!("could not listen on 127.0.0.1:{port}")),
        "{failure}"
    );
    assert!(failure.contains("Address already in use"), "{failure}");
}

#[tokio::test]
async fn a_storage_root_that_cannot_be_made_is_named() {
    let app = spawn_app().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let root = file.path().join("data");
    let mut settings = settings_for(app.db_url());
    settings.storage.root = root.clone();

    let failure = start_up_failure(settings).await;

    let expected = format!("could not open the storage root {}", root.display());
    assert!(failure.starts_with(&expected), "{failure}");
}

#[tokio::test]
async fn readable_logs_written_to_a_pipe_carry_no_colour_codes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let app = spawn_app().await;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .env("APP__DATABASE__URL", app.db_url())
        .env("APP__STORAGE__ROOT", app.storage.path())
        .env("APP__SERVER__PORT", "0")
        .env("APP__LOG__FORMAT", "pretty")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let listening = line.contains("intake is listening");
        seen.push(line);
        if listening {
            break;
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("intake is listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

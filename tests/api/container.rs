//! Keeps the container files honest: there is no Docker engine in CI, so the files are read
//! and checked against the code and configuration they must agree with.

use std::{collections::HashMap, path::Path};

use intake::{
    access::cors::CorsPolicy,
    api::ops::health,
    base::configuration::{LogFormat, ServerSettings, Settings, StorageKind},
};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{reserved_port, spawn_app};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// What `docker compose` makes of `${NAME:-default}`, `${NAME}` and `$$` without a .env file.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix("${") {
            let end = inner.find('}').expect("closed ${");
            let expr = &inner[..end];
            out.push_str(expr.split_once(":-").map_or("", |(_, default)| default));
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

fn compose() -> Value {
    serde_saphyr::from_str(&interpolate(&read("docker-compose.yml"))).expect("valid YAML")
}

/// The final stage of the Dockerfile: the lines after its last `FROM`.
fn dockerfile() -> (Vec<String>, Vec<String>) {
    let all: Vec<String> = read("Dockerfile")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let last_from = all.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    (all.clone(), all[last_from..].to_vec())
}

fn instruction<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .collect()
}

#[test]
fn compose_settings_load_through_the_apps_own_loader_and_point_at_db() {
    let compose = compose();
    let intake = &compose["services"]["intake"];
    let settings = Settings::load_from(&config_dir(), "production", service_env(intake))
        .expect("compose env loads");

    let db = settings.database.connect_options().unwrap();
    assert_eq!(db.get_host(), "db");
    assert_eq!(db.get_port(), 5432);
    let db_env = &compose["services"]["db"]["environment"];
    assert_eq!(Some(db.get_username()), db_env["POSTGRES_USER"].as_str());
    assert_eq!(db.get_database(), db_env["POSTGRES_DB"].as_str());
    assert_eq!(intake["depends_on"]["db"]["condition"], "service_healthy");
    assert!(
        compose["services"]["db"]["healthcheck"]["test"]
            .to_string()
            .contains("pg_isready")
    );
    assert!(
        compose["services"]["db"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:")
    );

    let storage = settings.storage.root.to_str().unwrap().to_owned();
    let volumes: Vec<&str> = intake["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        volumes.iter().any(|v| v.ends_with(&format!(":{storage}"))),
        "{volumes:?} mounts {storage}"
    );
    assert!(
        settings.upload.allowed_content_types.is_empty(),
        "the empty default allows all"
    );
    assert!(settings.auth.enabled, "the container requires tokens");
    assert_eq!(settings.auth.quota(), Some(10 * 1024 * 1024 * 1024));
    assert!(settings.rate_limit.per_minute > 0 && settings.rate_limit.burst > 0);
    assert_eq!(intake["restart"], "unless-stopped");
    assert_eq!(intake["build"], ".");
    assert_eq!(
        intake["healthcheck"]["test"],
        serde_json::json!(["CMD", "intake", "healthcheck"])
    );
}

fn service_env(service: &Value) -> HashMap<String, String> {
    service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("quoted environment values").to_owned(),
            )
        })
        .collect()
}

#[test]
fn both_compose_services_take_the_cors_origins_from_one_variable() {
    let compose = compose();
    for name in ["intake", "intake-s3"] {
        let mut env = service_env(&compose["services"][name]);
        let value = env
            .get_mut("APP__HTTP__CORS__ALLOWED_ORIGINS")
            .unwrap_or_else(|| panic!("{name} passes http.cors.allowed_origins"));
        assert!(value.is_empty(), "{name}: none by default");
        // As `INTAKE_CORS_ALLOWED_ORIGINS=…` in .env makes it.
        *value = "https://app.example.com,http://localhost:5173".to_owned();
        let settings = Settings::load_from(&config_dir(), "production", env).unwrap();
        assert_eq!(
            settings.http.cors.allowed_origins,
            ["https://app.example.com", "http://localhost:5173"],
            "{name}"
        );
        CorsPolicy::new(&settings.http.cors, settings.auth.enabled).expect("valid origins");
    }
    assert!(read(".env.example").contains("INTAKE_CORS_ALLOWED_ORIGINS="));
    assert!(read("docker-compose.yml").contains("${INTAKE_CORS_ALLOWED_ORIGINS:-}"));
}

#[test]
fn the_s3_profile_runs_intake_on_the_bucket_minio_init_creates() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["minio", "minio-init", "intake-s3"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["s3"]),
            "{name}"
        );
    }
    assert!(
        services["intake"]["profiles"].is_null(),
        "the default stays on disk"
    );
    let intake = &services["intake-s3"];
    let settings = Settings::load_from(&config_dir(), "production", service_env(intake))
        .expect("the s3 service's env loads");
    let s3 = &settings.storage.s3;
    assert_eq!(settings.storage.kind, StorageKind::S3);
    assert_eq!(s3.endpoint, "http://minio:9000");
    assert!(s3.path_style, "MinIO wants the bucket in the path");
    let minio = service_env(&services["minio"]);
    assert_eq!(s3.access_key_id, minio["MINIO_ROOT_USER"]);
    assert_eq!(
        s3.secret_access_key.expose_secret(),
        minio["MINIO_ROOT_PASSWORD"]
    );
    let init = &services["minio-init"];
    assert_eq!(service_env(init)["INTAKE_S3_BUCKET"], s3.bucket);
    assert!(init["command"].to_string().contains("mc mb"));
    assert_eq!(init["depends_on"]["minio"]["condition"], "service_healthy");
    assert_eq!(
        intake["depends_on"]["minio-init"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(intake["depends_on"]["db"]["condition"], "service_healthy");
    let first = &services["intake"];
    assert_ne!(intake["ports"], first["ports"], "both may run at once");
    for key in ["build", "healthcheck", "stop_grace_period", "restart"] {
        assert_eq!(intake[key], first[key], "{key}");
    }
    let shared = service_env(first);
    for (name, value) in service_env(intake) {
        if let Some(same) = shared.get(&name) {
            assert_eq!(&value, same, "{name}");
        }
    }
}

/// A duration as compose writes it: `40s`, `1m30s`.
fn compose_seconds(text: &str) -> u64 {
    humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .as_secs()
}

#[test]
fn docker_waits_longer_than_the_graceful_shutdown_before_it_kills() {
    let settings = Settings::load_from(&config_dir(), "production", HashMap::new()).unwrap();
    let shutdown = settings.server.shutdown_timeout_secs;
    let grace = compose()["services"]["intake"]["stop_grace_period"]
        .as_str()
        .map(compose_seconds)
        .expect("the intake service sets stop_grace_period");
    assert!(
        grace > shutdown,
        "stop_grace_period {grace} s vs shutdown {shutdown} s"
    );
    let docs = read("README.md") + &read("docs/deploying.md");
    // Each command to its last continued line.
    let runs: Vec<String> = docs
        .split("docker run")
        .skip(1)
        .map(|rest| {
            let mut command = String::new();
            for line in rest.lines() {
                command.push_str(line);
                if !line.trim_end().ends_with('\\') {
                    break;
                }
            }
            command
        })
        .filter(|run| run.contains("APP__"))
        .collect();
    assert!(!runs.is_empty());
    for run in runs {
        let timeout = run
            .split("--stop-timeout ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|secs| secs.parse::<u64>().ok())
            .expect("each `docker run` of intake in the docs sets --stop-timeout");
        assert!(
            timeout > shutdown,
            "--stop-timeout {timeout} vs shutdown {shutdown} s"
        );
    }
}

#[test]
fn the_port_agrees_across_dockerfile_compose_and_production_config() {
    let settings = Settings::load_from(&config_dir(), "production", HashMap::new()).unwrap();
    let (_, runtime) = dockerfile();
    let exposed: Vec<u16> = instruction(&runtime, "EXPOSE")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let compose = compose();
    let ports = compose["services"]["intake"]["ports"].as_array().unwrap();
    let container_ports: Vec<u16> = ports
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();

    assert_eq!(exposed, [settings.server.port]);
    assert_eq!(container_ports, [settings.server.port]);
    assert_eq!(settings.server.host, "0.0.0.0");
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn the_dockerfile_runs_unprivileged_offline_and_copies_only_what_exists() {
    let (all, runtime) = dockerfile();
    let user = instruction(&runtime, "USER")
        .last()
        .copied()
        .expect("a USER in the final stage")
        .to_owned();
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "final USER is {user}");

    assert!(all.iter().any(|l| l == "ENV SQLX_OFFLINE=true"));
    // A `# syntax=` line makes BuildKit fetch a frontend image: offline builds would fail.
    assert!(
        !read("Dockerfile")
            .lines()
            .any(|l| l.starts_with("# syntax")),
        "no syntax directive"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l == "ENV APP_ENVIRONMENT=production")
    );
    assert_eq!(instruction(&runtime, "STOPSIGNAL"), ["SIGTERM"]);
    let healthcheck = instruction(&runtime, "HEALTHCHECK");
    assert!(
        healthcheck[0].ends_with(r#"CMD ["intake", "healthcheck"]"#),
        "{healthcheck:?}"
    );

    for copy in instruction(&all, "COPY") {
        if copy.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
            assert!(path.exists(), "COPY source {source} exists");
        }
    }
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx").is_dir(),
        ".sqlx/ is committed"
    );
    let ignored = read(".dockerignore");
    for path in ["target/", ".git/", "data/"] {
        assert!(
            ignored.lines().any(|l| l == path),
            ".dockerignore keeps {path} out"
        );
    }
}

#[test]
fn the_rust_image_matches_rust_version() {
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let (all, _) = dockerfile();
    let image = all[0].split_whitespace().nth(1).unwrap();
    let tag = image
        .strip_prefix("rust:")
        .expect("the build stage uses the official rust image");
    assert!(
        tag.starts_with(&format!("{rust_version}.")),
        "{tag} vs {rust_version}"
    );
}

#[tokio::test]
async fn the_healthcheck_command_passes_on_a_ready_server_and_fails_without_one() {
    let app = spawn_app().await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let server = |port| ServerSettings {
        host: "0.0.0.0".into(),
        allowed_hosts: Vec::new(),
        port,
        workers: 1,
        max_blocking_threads: 0,
        shutdown_timeout_secs: 1,
        request_body_timeout_secs: 1,
    };

    health::check_local(&server(port)).await.expect("ready");

    assert!(health::check_local(&server(reserved_port())).await.is_err());
}

#[test]
fn cargo_run_runs_the_server() {
    // The README starts the server with `cargo run --release`: with two binaries in the
    // workspace, cargo needs to be told which one.
    let manifest = read("Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == r#"default-run = "intake""#),
        "Cargo.toml names intake as the default binary"
    );
}

#[test]
fn the_nats_profile_runs_jetstream_with_the_stream_intakes_events_go_to() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["nats", "nats-init"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["nats"]),
            "{name}"
        );
    }
    let nats = &services["nats"];
    let command = nats["command"].to_string();
    assert!(command.contains("\"-js\""), "JetStream on: {command}");
    let init = &services["nats-init"];
    assert_eq!(init["depends_on"]["nats"]["condition"], "service_healthy");
    assert_eq!(service_env(init)["NATS_URL"], "nats://nats:4222");
    // The stream covers the subjects intake publishes to with its own settings.
    let mut env = service_env(&services["intake"]);
    env.insert("APP__EVENTS__NATS__URL".into(), "nats://nats:4222".into());
    let settings = Settings::load_from(&config_dir(), "production", env).unwrap();
    assert_eq!(settings.events.nats.url, "nats://nats:4222");
    let subjects = format!("--subjects '{}>'", settings.events.nats.subject_prefix);
    assert!(
        init["command"].to_string().contains(&subjects),
        "{subjects}"
    );
    for name in ["intake", "intake-s3"] {
        let env = service_env(&services[name]);
        assert_eq!(
            env["APP__EVENTS__NATS__URL"], "",
            "{name}: off unless INTAKE_NATS_URL is set"
        );
    }
    assert!(read(".env.example").contains("INTAKE_NATS_URL="));
}

//! Events: what intake announces, and to whom. Webhooks signed as Standard Webhooks says,
//! retried until taken and in order for each file (`webhooks`), and endpoints that fail for
//! good, are dead, or while Postgres is away (`failures`); events read in the order their
//! transactions can no longer change (`order`); NATS JetStream, a real server,
//! also across a kill -9 (`nats`); the upload hook that may refuse an upload (`hook`); the
//! README's signature verifiers (`verifiers`); what the sweeps remove, and the outbox's own
//! pruning (`sweeps`).

mod failures;
mod hook;
mod nats;
mod order;
mod sweeps;
mod verifiers;
mod webhooks;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use intake::base::configuration::{Settings, WebhookSettings};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::method};

use crate::{
    child::ChildServer,
    helpers::{GENEROUS_TIMEOUT_MS, TestApp, file_part, random_bytes},
};

/// A signing secret, as `intake events secret` prints one.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Delivery paced for tests: a quick look for new events, retries within a fraction of a second.
pub fn quick_delivery(settings: &mut Settings) {
    settings.events.poll_interval_ms = 20;
    settings.events.retry_base_ms = 200;
    settings.events.retry_max_ms = 1_000;
}

/// Settings that deliver every event to `endpoint` (one webhook, as `webhook` makes it),
/// paced for tests (`quick_delivery`).
pub fn delivering_to(endpoint: &Endpoint) -> impl Fn(&mut Settings) + use<> {
    let url = endpoint.url();
    move |s| {
        quick_delivery(s);
        s.events.webhooks = vec![webhook(&url)];
    }
}

/// One webhook endpoint at `url`, signing with `SECRET`, taking every type.
pub fn webhook(url: &str) -> WebhookSettings {
    WebhookSettings {
        name: "receiver".into(),
        url: url.into(),
        secret: SECRET.into(),
        types: Vec::new(),
        timeout_ms: GENEROUS_TIMEOUT_MS,
    }
}

/// The events settings of a child server, as an operator writes them: one webhook endpoint at
/// `url` taking `types`, delivery paced as `quick_delivery` paces it.
pub fn config_file(dir: &Path, url: &str, types: &[&str]) -> PathBuf {
    let path = dir.join("events.toml");
    let text = format!(
        r#"
[events]
poll_interval_ms = 20
retry_base_ms = 200
retry_max_ms = 1000

[[events.webhooks]]
name = "receiver"
url = "{url}"
secret = "{SECRET}"
types = {types:?}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A request an endpoint received, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }
}

/// How an endpoint answers a request: its status, from what it has seen so far.
type Answer = Box<dyn Fn(&Received) -> u16 + Send + Sync>;

/// A receiver of HTTP POSTs (a webhook endpoint, the upload hook) that tells the test about
/// every request it answers, in order, so that the test waits for requests, not for time.
pub struct Endpoint {
    pub server: MockServer,
    received: mpsc::UnboundedReceiver<Received>,
}

struct Recording {
    sent: mpsc::UnboundedSender<Received>,
    answer: Answer,
    body: Mutex<Option<Value>>,
}

impl Respond for Recording {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
            .collect();
        let mut received = Received {
            headers,
            body: request.body.clone(),
            status: 0,
        };
        received.status = (self.answer)(&received);
        let _ = self.sent.send(received.clone());
        let template = ResponseTemplate::new(received.status);
        match self.body.lock().unwrap().as_ref() {
            Some(body) => template.set_body_json(body),
            None => template,
        }
    }
}

impl Endpoint {
    /// Answers every POST as `answer` says.
    pub async fn start(answer: impl Fn(&Received) -> u16 + Send + Sync + 'static) -> Self {
        Self::answering(answer, None).await
    }

    /// Answers with `body` (JSON) as well.
    pub async fn answering(
        answer: impl Fn(&Received) -> u16 + Send + Sync + 'static,
        body: Option<Value>,
    ) -> Self {
        let server = MockServer::start().await;
        let (sent, received) = mpsc::unbounded_channel();
        Mock::given(method("POST"))
            .respond_with(Recording {
                sent,
                answer: Box::new(answer),
                body: Mutex::new(body),
            })
            .mount(&server)
            .await;
        Self { server, received }
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.server.uri())
    }

    /// How many requests it has answered that the test has not taken with `next`.
    pub fn untaken(&mut self) -> usize {
        std::iter::from_fn(|| self.received.try_recv().ok()).count()
    }

    /// The next request it answers (within a generous bound: a failure, not a wait).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(
            Duration::from_millis(GENEROUS_TIMEOUT_MS),
            self.received.recv(),
        )
        .await
        .expect("a request arrives")
        .expect("the endpoint is up")
    }
}

/// Holds `value` to schema `name` of the server's API document: the members it has are the
/// ones described (nested objects by their `$ref`), and the required ones are there.
pub async fn assert_described(app: &crate::helpers::TestApp, name: &str, value: &Value) {
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    held_to(&document, name, value);
}

fn held_to(document: &Value, name: &str, value: &Value) {
    let schema = &document["components"]["schemas"][name];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}"));
    let members = value
        .as_object()
        .unwrap_or_else(|| panic!("{name}: {value}"));
    for (member, inner) in members {
        let described = properties
            .get(member)
            .unwrap_or_else(|| panic!("{name}.{member} is not described"));
        if let Some(reference) = described["$ref"].as_str()
            && inner.is_object()
        {
            let inner_name = reference.trim_start_matches("#/components/schemas/");
            if document["components"]["schemas"][inner_name]["properties"].is_object() {
                held_to(document, inner_name, inner);
            }
        }
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        assert!(
            members.contains_key(required.as_str().unwrap()),
            "{name} lacks {required}"
        );
    }
}

/// Flips an endpoint from its first answer to its second.
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn flip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An endpoint that answers `first` until the switch is flipped, then `then`.
pub async fn switching(first: u16, then: u16) -> (Endpoint, Switch) {
    let flipped = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flipped);
    let endpoint = Endpoint::start(move |_| {
        if seen.load(Ordering::SeqCst) {
            then
        } else {
            first
        }
    })
    .await;
    (endpoint, Switch(flipped))
}

/// The real binary on `db`'s database, with one webhook to `endpoint` taking `types`, as an
/// operator configures it (`config_file`), and `env`.
pub struct WebhookChild {
    pub server: ChildServer,
    pub client: reqwest::Client,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl WebhookChild {
    pub async fn start(
        db: &TestApp,
        endpoint: &Endpoint,
        types: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let (root, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut command = ChildServer::command(&db.db_url(), root.path(), env);
        let config = config_file(dir.path(), &endpoint.url(), types);
        command.arg("--config").arg(config);
        Self {
            server: ChildServer::spawn(command).await,
            client: reqwest::Client::new(),
            _dirs: (root, dir),
        }
    }

    /// Stores a file of 2,000 bytes made from `seed`; its id.
    pub async fn upload(&self, name: &str, seed: u64) -> String {
        upload_to(&self.client, &self.server, name, seed).await
    }
}

/// `POST /upload` to a child server of a file of 2,000 bytes made from `seed`; its id.
pub async fn upload_to(
    client: &reqwest::Client,
    server: &ChildServer,
    name: &str,
    seed: u64,
) -> String {
    let part = file_part(name, random_bytes(2000, seed), None);
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = client
        .post(server.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

/// `intake events ARGS` against the database at `db_url`: what it printed.
pub async fn intake_events(db_url: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("APP__DATABASE__URL", db_url)
        .arg("events")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Whether a request is signed with `secret` as the Standard Webhooks specification says:
/// HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under the secret's base64-decoded
/// bytes, compared with each `v1,` signature of `webhook-signature`. Written from the
/// specification, not with intake's code.
pub fn signed_with(secret: &str, received: &Received) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let content = [
        received.header("webhook-id").as_bytes(),
        b".",
        received.header("webhook-timestamp").as_bytes(),
        b".",
        &received.body,
    ]
    .concat();
    mac.update(&content);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    received
        .header("webhook-signature")
        .split(' ')
        .any(|signature| signature.strip_prefix("v1,") == Some(expected.as_str()))
}

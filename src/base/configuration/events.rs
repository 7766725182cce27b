//! The `[events]` section: where the outbox delivers (webhooks, NATS JetStream), how it
//! retries, how long it keeps what it delivered, and the upload hook.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct EventSettings {
    /// How long an event is kept once every sink has it (or gave up on it).
    pub retention_secs: u64,
    /// How often each instance looks for events due, when it found none the last time.
    pub poll_interval_ms: u64,
    /// Attempts per event and sink before it is marked failed.
    pub max_attempts: i32,
    /// The wait after the first failed attempt; each later one waits twice as long, up to
    /// `retry_max_ms`, give or take a fifth (jitter).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub webhooks: Vec<WebhookSettings>,
    pub nats: NatsSettings,
    pub pre_upload: PreUploadSettings,
}

/// One `[[events.webhooks]]` endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// The sink's name in metrics, logs and `intake events`; the URL when empty. Deliveries
    /// belong to the name: renaming an endpoint starts it afresh.
    #[serde(default)]
    pub name: String,
    pub url: String,
    /// `whsec_` and base64 (Standard Webhooks), as `intake events secret` makes one.
    pub secret: SecretString,
    /// The event types it takes (`file.stored`, `file.deleted`, `upload.expired`); empty: all.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NatsSettings {
    /// `nats://host:4222`; empty: no NATS.
    pub url: String,
    /// Events go to `{subject_prefix}{type}`, e.g. `intake.file.stored`.
    pub subject_prefix: String,
    /// The event types it takes; empty: all.
    pub types: Vec<String>,
    /// How long to wait for JetStream's acknowledgement.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreUploadSettings {
    /// Asked before an upload stores anything; empty: no hook.
    pub url: String,
    /// Signs the hook's requests as the webhooks' are; empty: unsigned.
    pub secret: SecretString,
    pub timeout_ms: u64,
    /// What a hook that cannot be asked (down, slow, answering 5xx) means.
    pub on_failure: OnHookFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHookFailure {
    Refuse,
    Allow,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl EventSettings {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }
}

impl WebhookSettings {
    pub fn sink_name(&self) -> &str {
        if self.name.is_empty() {
            &self.url
        } else {
            &self.name
        }
    }
}

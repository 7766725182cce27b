//! Events to NATS JetStream: each to `{subject_prefix}{type}` with `Nats-Msg-Id` set to the
//! event id, so that JetStream drops a second copy within its stream's duplicate window; an
//! event counts as delivered only once JetStream acknowledges it.

use std::time::Duration;

use async_nats::{
    ConnectOptions, HeaderMap,
    jetstream::{self, context::Context},
};

use crate::base::{configuration::NatsSettings, telemetry::cause_chain};

#[derive(Clone)]
pub struct Nats {
    jetstream: Context,
    prefix: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid events.nats.url")]
pub struct NatsUrlError(#[source] async_nats::ConnectError);

impl Nats {
    /// Connects in the background, and keeps reconnecting: a NATS that is down at start-up or
    /// later delays events, it does not stop the service.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, NatsUrlError> {
        let client = ConnectOptions::new()
            .name(concat!("intake/", env!("CARGO_PKG_VERSION")))
            .retry_on_initial_connect()
            .connect(settings.url.as_str())
            .await
            .map_err(NatsUrlError)?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(Duration::from_millis(settings.timeout_ms.max(1)));
        Ok(Self {
            jetstream,
            prefix: settings.subject_prefix.clone(),
        })
    }

    /// Publishes event `id` of type `kind`; `Err` with why when JetStream did not acknowledge it.
    pub async fn publish(&self, id: &str, kind: &str, body: String) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        headers.insert("Content-Type", "application/json");
        let subject = format!("{}{kind}", self.prefix);
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(|error| cause_chain(&error))?;
        ack.await.map(drop).map_err(|error| cause_chain(&error))
    }
}

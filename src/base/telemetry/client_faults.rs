//! Connections that the HTTP layer (actix-http) ended for the client's fault: a malformed
//! request, a client that stalled or vanished. actix-http logs each at ERROR, so that anyone
//! could fill the error log by sending garbage. Here they are counted instead
//! (`intake_http_connection_errors_total`) and told at WARN, at most once per interval, with
//! the last one's reason.

use std::{
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::layer::{Context, Layer};

use crate::base::telemetry::metrics;

/// Where actix-http reports a connection it ended, and how its message begins.
const TARGET: &str = "actix_http::h1::dispatcher";
const PREFIX: &str = "stream error";

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());

/// Holds actix-http's connection errors back from every other layer, and counts them.
pub struct ClientFaults;

impl<S: Subscriber> Layer<S> for ClientFaults {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || meta.target() != TARGET {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if !message.0.starts_with(PREFIX) {
            return true;
        }
        COUNT.fetch_add(1, Ordering::Relaxed);
        metrics::connection_error();
        if let Ok(mut last) = LAST.lock() {
            *last = message.0;
        }
        false
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Tells, at WARN, how many connections ended for the client's fault since the last report,
/// if any.
pub fn report() {
    let count = COUNT.swap(0, Ordering::Relaxed);
    if count == 0 {
        return;
    }
    let last = LAST.lock().map(|last| last.clone()).unwrap_or_default();
    tracing::warn!(
        count,
        last = %last,
        "connections ended by the HTTP layer for the client's fault (malformed, stalled or gone)"
    );
}

/// Reports every `interval`.
pub fn spawn_reporting(interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            ticks.tick().await;
            report();
        }
    })
}

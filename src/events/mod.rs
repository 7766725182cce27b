//! Events: what happened to files, told to webhooks and NATS JetStream. The statements that
//! store, delete or expire write their event in the same transaction (the outbox, `outbox`);
//! here every instance delivers them in the background (each sink read by one instance at a
//! time, each retry claimed by one), at least once, in order for each file and sink; `backlog`
//! is what is not delivered yet. The upload hook (`hook`) is asked before an upload stores
//! anything.

pub mod backlog;
pub mod hook;
pub mod nats;
pub mod outbox;
pub mod payload;
pub mod webhook;

use std::{sync::Arc, time::Duration};

use futures_util::future::join_all;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use self::{
    nats::{Nats, NatsUrlError},
    outbox::{Attempt, Claimed},
    webhook::{Answer, InvalidSecret, Key},
};
use crate::base::{
    configuration::{EventSettings, WebhookSettings},
    telemetry::{cause_chain, metrics},
};

/// The event types there are.
pub const TYPES: [&str; 3] = ["file.stored", "file.deleted", "upload.expired"];
/// The sink name of `events.nats`.
const NATS_SINK: &str = "nats";
/// Deliveries one instance claims for one sink at a time (and attempts at once).
const BATCH: i64 = 32;
/// How long a claim holds beyond the sink's own timeout, before another instance may attempt
/// the delivery again (the first instance having died, or lost Postgres): the time between a
/// claim and its attempt, and between the attempt and its settling, with room to spare. The
/// cost of a margin too short is a second attempt, with the same event id.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often the backlog is counted (the metrics), sinks said to be alive, and old events
/// pruned.
const UPKEEP: Duration = Duration::from_secs(15);
/// Why a sink was disabled.
const GONE: &str = "the endpoint answered 410 Gone";
/// The longest answer of an endpoint kept as a failed delivery's error.
const ERROR_BODY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events.webhooks `{0}`: {1}")]
    Secret(String, #[source] InvalidSecret),
    #[error(
        "`{1}` in the types of event sink `{0}` is none of file.stored, file.deleted, upload.expired"
    )]
    Type(String, String),
    #[error("two event sinks are named `{0}`")]
    Twice(String),
    #[error(transparent)]
    Nats(#[from] NatsUrlError),
    #[error("could not register the event sinks")]
    Database(#[from] sqlx::Error),
}

/// Where one sink's events go.
enum Target {
    Webhook {
        http: reqwest::Client,
        url: String,
        key: Key,
        timeout: Duration,
    },
    Nats {
        nats: Nats,
        timeout: Duration,
    },
}

struct Sink {
    name: String,
    types: Vec<String>,
    target: Target,
}

/// Registers the configured sinks and starts delivering to them (nothing when there are
/// none): a task per sink, and one that counts, prunes and keeps the sinks alive.
pub async fn start(
    settings: &EventSettings,
    pool: PgPool,
    http: &reqwest::Client,
) -> Result<Vec<JoinHandle<()>>, EventsError> {
    let sinks = sinks(settings, http).await?;
    if sinks.is_empty() {
        return Ok(Vec::new());
    }
    let registered: Vec<_> = sinks
        .iter()
        .map(|sink| (sink.name.clone(), sink.types.clone()))
        .collect();
    outbox::register(&pool, &registered).await?;
    let names: Vec<String> = registered.into_iter().map(|(name, _)| name).collect();
    let mut tasks = vec![tokio::spawn(upkeep(pool.clone(), names, settings.clone()))];
    for sink in sinks {
        let (pool, settings) = (pool.clone(), settings.clone());
        tasks.push(tokio::spawn(deliver(Arc::new(sink), pool, settings)));
    }
    Ok(tasks)
}

async fn sinks(settings: &EventSettings, http: &reqwest::Client) -> Result<Vec<Sink>, EventsError> {
    let mut sinks = Vec::new();
    for hook in &settings.webhooks {
        sinks.push(webhook_sink(hook, http)?);
    }
    if !settings.nats.url.is_empty() {
        let timeout = Duration::from_millis(settings.nats.timeout_ms.max(1));
        sinks.push(Sink {
            name: NATS_SINK.into(),
            types: settings.nats.types.clone(),
            target: Target::Nats {
                nats: Nats::connect(&settings.nats).await?,
                timeout,
            },
        });
    }
    for (i, sink) in sinks.iter().enumerate() {
        if let Some(kind) = sink
            .types
            .iter()
            .find(|kind| !TYPES.contains(&kind.as_str()))
        {
            return Err(EventsError::Type(sink.name.clone(), kind.clone()));
        }
        if sinks[..i].iter().any(|other| other.name == sink.name) {
            return Err(EventsError::Twice(sink.name.clone()));
        }
    }
    Ok(sinks)
}

fn webhook_sink(hook: &WebhookSettings, http: &reqwest::Client) -> Result<Sink, EventsError> {
    let name = hook.sink_name().to_owned();
    let key = Key::parse(&hook.secret).map_err(|e| EventsError::Secret(name.clone(), e))?;
    Ok(Sink {
        name,
        types: hook.types.clone(),
        target: Target::Webhook {
            http: http.clone(),
            url: hook.url.clone(),
            key,
            timeout: Duration::from_millis(hook.timeout_ms.max(1)),
        },
    })
}

impl Sink {
    fn timeout(&self) -> Duration {
        match &self.target {
            Target::Webhook { timeout, .. } | Target::Nats { timeout, .. } => *timeout,
        }
    }

    /// One attempt; `Err` when the endpoint is gone for good (410).
    async fn attempt(&self, event: &Claimed, settings: &EventSettings) -> Result<Attempt, ()> {
        let id = event.event_id.to_string();
        let failed = |error: String| Attempt::Failed {
            error,
            retry: retry_after(settings, event.attempt),
        };
        match &self.target {
            Target::Webhook {
                http,
                url,
                key,
                timeout,
            } => match webhook::post(http, url, Some(key), &id, event.body.clone(), *timeout).await
            {
                Answer::Accepted(_) => Ok(Attempt::Delivered),
                Answer::Gone => Err(()),
                Answer::Refused(status, body) => {
                    let body = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY)]);
                    Ok(failed(format!("{status}: {body}")))
                }
                Answer::Unreachable(error) => Ok(failed(error)),
            },
            Target::Nats { nats, .. } => {
                match nats.publish(&id, &event.kind, event.body.clone()).await {
                    Ok(()) => Ok(Attempt::Delivered),
                    Err(error) => Ok(failed(error)),
                }
            }
        }
    }
}

/// The wait after failed attempt `attempt` (1 for the first): `retry_base_ms` doubling each
/// time up to `retry_max_ms`, then ±20% so that the retries of many events spread out.
pub fn retry_after(settings: &EventSettings, attempt: i32) -> Duration {
    let doublings = attempt.saturating_sub(1).clamp(0, 40) as u32;
    let wait = (settings.retry_base_ms as f64 * 2f64.powi(doublings as i32))
        .min(settings.retry_max_ms as f64);
    let spread = getrandom::u32().map_or(0.5, |r| r as f64 / u32::MAX as f64);
    Duration::from_millis((wait * (0.8 + 0.4 * spread)) as u64)
}

/// Delivers `sink`'s events until the server stops: reads the events past its cursor (when
/// this instance has the sink's lease) and claims the queued deliveries that are due, attempts
/// them all at once, records the outcomes; when there is nothing to do (or Postgres cannot be
/// reached), waits a poll interval. While the endpoint fails everything it is sent, the cursor
/// moves one batch per backoff (`retry_after` of the failed batches in a row), so that a dead
/// endpoint costs next to nothing and its events wait in order.
async fn deliver(sink: Arc<Sink>, pool: PgPool, settings: EventSettings) {
    let lease = sink.timeout() + LEASE_MARGIN;
    let holder = Uuid::new_v4();
    let mut failing = 0;
    loop {
        let work = async {
            let queued = outbox::claim(&pool, &sink.name, BATCH, lease).await?;
            let fresh = outbox::read(&pool, &sink.name, holder, BATCH, lease).await?;
            Ok::<_, sqlx::Error>((queued, fresh))
        };
        let (queued, fresh) = match work.await {
            Ok(work) => work,
            Err(error) => {
                tracing::warn!(sink = %sink.name, error = cause_chain(&error), "could not claim events; trying again");
                tokio::time::sleep(settings.poll_interval()).await;
                continue;
            }
        };
        if queued.is_empty() && fresh.is_empty() {
            tokio::time::sleep(settings.poll_interval()).await;
            continue;
        }
        let sent: Vec<&Claimed> = (queued.iter())
            .chain(fresh.iter().filter(|f| !f.held).map(|f| &f.event))
            .collect();
        let answers = join_all(sent.iter().map(|event| sink.attempt(event, &settings))).await;
        let gone = answers.iter().any(Result::is_err);
        let outcomes: Vec<_> = (sent.into_iter().zip(answers))
            .map(|(event, answer)| {
                let attempt = answer.unwrap_or_else(|()| Attempt::Failed {
                    error: GONE.into(),
                    retry: Duration::ZERO,
                });
                metrics::event_attempt(&sink.name, attempt == Attempt::Delivered);
                (event, attempt)
            })
            .collect();
        let (from_queue, from_cursor) = outcomes.split_at(queued.len());
        let delivered = from_cursor.iter().any(|(_, a)| *a == Attempt::Delivered);
        failing = if delivered || from_cursor.is_empty() {
            0
        } else {
            failing + 1
        };
        let failures: Vec<_> = (from_cursor.iter())
            .filter(|(_, attempt)| *attempt != Attempt::Delivered)
            .cloned()
            .collect();
        // Unrecorded, the attempts are made again (a lease is over, or the cursor did not
        // move): at least once.
        let recorded = async {
            let settled = outbox::settle(&pool, &sink.name, from_queue, settings.max_attempts);
            let advanced = outbox::advance(
                &pool,
                &sink.name,
                holder,
                &fresh,
                &failures,
                settings.max_attempts,
            );
            let (settled, advanced) = (settled.await?, advanced.await?);
            Ok::<_, sqlx::Error>(settled + advanced.unwrap_or(0))
        };
        match recorded.await {
            Ok(0) => {}
            Ok(failed) => {
                tracing::warn!(sink = %sink.name, failed, remedy = "intake events list --failed", "events failed after their last attempt")
            }
            Err(error) => {
                tracing::warn!(sink = %sink.name, error = cause_chain(&error), "could not record deliveries; they will be attempted again")
            }
        }
        // The backlog is counted by `upkeep`: counting after every batch cost a scan of the
        // pending deliveries per 32 events.
        if gone {
            disable(&pool, &sink.name).await;
        } else if failing > 0 {
            let wait = retry_after(&settings, failing);
            tracing::warn!(
                sink = %sink.name,
                failed = from_cursor.len(),
                wait_ms = wait.as_millis() as u64,
                "the sink failed every new event it was sent; waiting before sending more"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Disables `sink` for every instance, and says so once it is (the metrics too).
async fn disable(pool: &PgPool, sink: &str) {
    if let Err(error) = outbox::disable(pool, sink, GONE).await {
        tracing::warn!(
            sink,
            error = cause_chain(&error),
            "could not disable an event sink"
        );
        return;
    }
    count(pool, &[sink.to_owned()]).await;
    // `intake events retry --all` enables it again and sends what it missed.
    tracing::error!(
        sink,
        reason = GONE,
        remedy = "intake events retry --all",
        "event sink disabled"
    );
}

/// Sets the backlog gauges of `sinks`.
async fn count(pool: &PgPool, sinks: &[String]) {
    match backlog::backlog(pool, sinks).await {
        Ok(backlogs) => {
            for b in backlogs {
                metrics::event_backlog(&b.sink, b.pending, b.failed, b.oldest_pending, b.disabled);
            }
        }
        Err(error) => tracing::debug!(
            error = cause_chain(&error),
            "could not count the event backlog"
        ),
    }
}

async fn upkeep(pool: PgPool, sinks: Vec<String>, settings: EventSettings) {
    let mut ticks = tokio::time::interval(UPKEEP);
    loop {
        ticks.tick().await;
        let kept = async {
            outbox::heartbeat(&pool, &sinks).await?;
            let mut pruned = 0;
            loop {
                let batch = outbox::prune(&pool, settings.retention()).await?;
                pruned += batch;
                if batch < outbox::PRUNE_BATCH as u64 {
                    return Ok::<_, sqlx::Error>(pruned);
                }
            }
        };
        match kept.await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "pruned delivered events"),
            Err(error) => tracing::warn!(error = cause_chain(&error), "could not prune events"),
        }
        count(&pool, &sinks).await;
    }
}

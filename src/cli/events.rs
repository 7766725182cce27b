//! `intake events …`: the deliveries that have not been made (`list`), replaying failed ones
//! (`retry`), and a new webhook signing secret (`secret`).

use std::io::Write;

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::admin::{AdminError, connect};
use crate::{
    base::configuration::DatabaseSettings,
    events::{backlog, webhook::Key},
};

/// The most deliveries `list` prints.
const LIST_LIMIT: i64 = 1000;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The deliveries not made: pending (due, or waiting for a retry) and failed, oldest first.
    List {
        /// Only the failed ones: every attempt was made, or the sink was disabled (410 Gone).
        #[arg(long)]
        failed: bool,
    },
    /// Make failed deliveries pending again, due at once with their attempts counted afresh;
    /// a sink disabled by a 410 is enabled again.
    Retry {
        /// The event whose failed deliveries to retry (`events list` shows the ids).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<Uuid>,
        /// Every failed delivery.
        #[arg(long)]
        all: bool,
    },
    /// Print a new webhook signing secret (`whsec_…`) for `[[events.webhooks]]`.
    Secret,
}

pub async fn events(
    command: EventsCommand,
    settings: &DatabaseSettings,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    if let EventsCommand::Secret = command {
        writeln!(out, "{}", Key::generate().map_err(std::io::Error::other)?)?;
        return Ok(());
    }
    let pool = connect(settings).await?;
    match command {
        EventsCommand::List { failed } => {
            writeln!(
                out,
                "{:<36}  {:<14}  {:<36}  {:<16}  {:<7}  {:>8}  {:<20}  LAST ERROR",
                "EVENT", "TYPE", "FILE", "SINK", "STATE", "ATTEMPTS", "NEXT ATTEMPT"
            )?;
            for d in backlog::undelivered(&pool, failed, LIST_LIMIT).await? {
                let next = match d.state.as_str() {
                    "pending" => d.next_attempt_at.format(&Rfc3339).unwrap_or_default(),
                    _ => "-".into(),
                };
                writeln!(
                    out,
                    "{:<36}  {:<14}  {:<36}  {:<16}  {:<7}  {:>8}  {:<20}  {}",
                    d.event_id,
                    d.kind,
                    d.subject,
                    d.sink,
                    d.state,
                    d.attempts,
                    next,
                    d.last_error.as_deref().unwrap_or("-"),
                )?;
            }
        }
        EventsCommand::Retry { id, .. } => {
            let retried = backlog::retry(&pool, id).await?;
            writeln!(out, "{retried} failed deliveries are due again")?;
        }
        EventsCommand::Secret => unreachable!("answered above"),
    }
    pool.close().await;
    Ok(())
}

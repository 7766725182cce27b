//! `intake upload FILE…`: a tus client for the command line. Each file is sent in chunks, with
//! a progress bar; an interrupted upload is remembered (`resume`) and continued by the next
//! run, on whichever instance `--url` reaches; network errors and busy answers are retried
//! with backoff. At the end the server's SHA-256 is compared with the file's own. And
//! `intake share FILE-ID`, a share link for a stored file (`share`).

mod body;
mod progress;
mod resume;
mod share;
mod transfer;

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde_json::Value;

pub use self::{
    share::{ShareArgs, ShareError, share},
    transfer::UploadError,
};

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The files to upload, one after the other.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The server (or the balancer in front of the instances).
    #[arg(long, env = "INTAKE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A bearer token (`intake tokens create`); not needed when the server's auth is off.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// How long the files live once stored: `30m`, `12h`, `7d`, `2w` [default: the server's
    /// `upload.default_lifetime_secs`].
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Bytes per PATCH.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub chunk_size: u64,
    /// Attempts in a row that may fail (network errors, 5xx, 423, 429) before giving up.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// Where unfinished uploads are remembered [default: $XDG_STATE_HOME/intake/uploads.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print the file objects as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Uploads every file; prints what was stored. Stops at the first file that fails (what it
/// sent stays resumable).
pub async fn upload(args: UploadArgs) -> Result<(), UploadError> {
    let state = match &args.state {
        Some(path) => path.clone(),
        None => resume::default_path().ok_or(UploadError::NoStateDir)?,
    };
    // Every file is checked before any is sent: a folder among them creates nothing.
    for file in &args.files {
        let metadata = std::fs::metadata(file).map_err(|e| UploadError::File(file.clone(), e))?;
        if !metadata.is_file() {
            return Err(UploadError::NotAFile(file.clone()));
        }
    }
    let client = transfer::Client::new(&args)?;
    let mut stored: Vec<Value> = Vec::new();
    for file in &args.files {
        stored.push(client.upload(file, &state).await?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stored).expect("JSON values print")
        );
    } else {
        print_table(&stored);
    }
    Ok(())
}

fn print_table(files: &[Value]) {
    println!(
        "{:<36}  {:>12}  {:<16}  {:<20}  filename",
        "id", "size", "sha256", "expires_at"
    );
    for file in files {
        let sha256 = file["sha256"].as_str().unwrap_or_default();
        // To the second, in UTC; `never`: until deleted.
        let expires_at = file["expires_at"]
            .as_str()
            .and_then(|at| at.get(..19))
            .map_or_else(|| "never".to_owned(), |at| format!("{at}Z"));
        println!(
            "{:<36}  {:>12}  {:<16}  {:<20}  {}",
            file["id"].as_str().unwrap_or_default(),
            file["size"].as_u64().unwrap_or_default(),
            &sha256[..sha256.len().min(16)],
            expires_at,
            file["filename"].as_str().unwrap_or_default()
        );
    }
}

/// Waits before the `attempt`th retry (from 1): 0.5 s, doubled each time, at most 30 s.
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(6);
    Duration::from_millis(500 * 2u64.pow(doublings)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_waits_half_a_second_then_twice_as_long_up_to_30_s() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}

//! `intake share FILE-ID`: a share link for one of the caller's files, printed as the URL that
//! downloads it without a token.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ShareArgs {
    /// The file's id (as `intake upload` prints it).
    pub file: uuid::Uuid,
    /// How long the link lives: `30m`, `12h`, `7d`, `2w` [default: the server's
    /// `sharing.default_expiry_secs`].
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Whole downloads the link allows [default: no limit].
    #[arg(long)]
    pub max_downloads: Option<u32>,
    /// The server (or the balancer in front of the instances).
    #[arg(long, env = "INTAKE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A bearer token (`intake tokens create`); not needed when the server's auth is off.
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// Print the link object (with its absolute `url`) as JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("the server refused the link: {status} {detail}")]
    Refused { status: u16, detail: String },
    #[error("could not reach the server")]
    Http(#[from] reqwest::Error),
}

/// Makes the link and prints it.
pub async fn share(args: ShareArgs) -> Result<(), ShareError> {
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut request = http
        .post(format!("{base}/files/{}/links", args.file))
        .json(&json!({"expires_in": args.expires_in, "max_downloads": args.max_downloads}));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let mut link: Value = response.json().await?;
    if status != 201 {
        let detail = link["detail"].as_str().unwrap_or_default().to_owned();
        let fields = link["errors"].as_array().map(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e["field"].as_str().unwrap_or(""), e["message"]))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let detail = match fields {
            Some(fields) if !fields.is_empty() => format!("{detail} ({fields})"),
            _ => detail,
        };
        return Err(ShareError::Refused { status, detail });
    }
    let url = format!("{base}{}", link["url"].as_str().unwrap_or_default());
    link["url"] = Value::from(url.as_str());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&link).expect("JSON values print")
        );
    } else {
        let until = link["expires_at"].as_str().unwrap_or("revoked");
        println!("{url}\t(until {until})");
    }
    Ok(())
}

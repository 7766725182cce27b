//! The upload hook (`events.pre_upload`): before an upload stores anything, intake POSTs who
//! is uploading and what they declare, signed as the webhooks are, and waits for the verdict:
//! `2xx` lets the upload go on (with the `metadata` of its answer, if any, attached to the
//! file), `403` or `422` refuses it with the hook's `reason`, anything else (no answer in time,
//! another status, metadata that is not a small JSON object) follows `on_failure`.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::webhook::{self, Answer, InvalidSecret, Key};
use crate::base::{
    configuration::{OnHookFailure, PreUploadSettings},
    error::ApiError,
    telemetry::metrics,
};

/// The reason given when a hook refuses without one.
const NO_REASON: &str = "the upload was refused by the upload hook";
/// The longest reason passed on to the client.
const MAX_REASON: usize = 500;
/// The most metadata, as JSON, that a hook may attach to a file.
pub const MAX_METADATA_BYTES: usize = 4096;

#[derive(Clone)]
pub struct Hook {
    http: reqwest::Client,
    pool: PgPool,
    url: String,
    key: Option<Key>,
    timeout: Duration,
    on_failure: OnHookFailure,
}

/// What the hook is told about an upload about to start (the `data` of an `upload.proposed`
/// request).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = UploadProposal)]
pub struct Proposal<'a> {
    /// The uploading user's id; for an upload through an upload link, the link's creator.
    pub user_id: i64,
    /// The user's name (`anonymous` with auth off); `admit` looks it up.
    #[schema(value_type = String)]
    pub user: Option<String>,
    /// The upload link the upload comes through, if it does.
    pub upload_link: Option<Uuid>,
    /// `multipart`, `tus` or `ietf`.
    pub protocol: &'static str,
    /// The name the client gave, made safe as the file's name will be.
    pub filename: &'a str,
    /// As the client declares it (the part's `Content-Type`, tus `filetype`); intake decides
    /// the stored type from the bytes.
    pub content_type: Option<&'a str>,
    /// Unknown for a multipart part and a deferred-length resumable upload.
    pub size: Option<u64>,
    /// tus/IETF `Upload-Metadata`, decoded (a key without a value is `null`); `{}` for
    /// multipart.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The body of a refusal.
#[derive(Deserialize)]
struct Refusal {
    reason: Option<String>,
}

/// The body of a yes (any other member is ignored).
#[derive(Deserialize)]
struct Consent {
    metadata: Option<serde_json::Value>,
}

impl Hook {
    /// `None` when no hook is configured.
    pub fn new(
        settings: &PreUploadSettings,
        http: &reqwest::Client,
        pool: PgPool,
    ) -> Result<Option<Self>, InvalidSecret> {
        if settings.url.is_empty() {
            return Ok(None);
        }
        let key = if settings.secret.expose_secret().is_empty() {
            None
        } else {
            Some(Key::parse(&settings.secret)?)
        };
        Ok(Some(Self {
            http: http.clone(),
            pool,
            url: settings.url.clone(),
            key,
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            on_failure: settings.on_failure,
        }))
    }

    /// Asks the hook about `proposal`: `Ok` to go on, with the metadata to attach to the file;
    /// `403 upload_refused` with the hook's reason; or `503 upload_hook_unavailable` when it
    /// could not be asked and `on_failure` says refuse.
    #[tracing::instrument(name = "hook.pre_upload", skip_all, fields(filename = proposal.filename))]
    pub async fn admit(
        &self,
        mut proposal: Proposal<'_>,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        proposal.user =
            sqlx::query_scalar!("SELECT name FROM users WHERE id = $1", proposal.user_id)
                .fetch_optional(&self.pool)
                .await?;
        let id = Uuid::now_v7().to_string();
        let body = serde_json::json!({ "type": "upload.proposed", "data": proposal }).to_string();
        let answer = webhook::post(
            &self.http,
            &self.url,
            self.key.as_ref(),
            &id,
            body,
            self.timeout,
        );
        let why = match answer.await {
            Answer::Accepted(body) => match attached(&body) {
                Ok(metadata) => {
                    metrics::upload_hook_call("allowed");
                    return Ok(metadata);
                }
                Err(why) => why,
            },
            Answer::Refused(StatusCode::FORBIDDEN | StatusCode::UNPROCESSABLE_ENTITY, body) => {
                metrics::upload_hook_call("refused");
                tracing::info!("the upload hook refused the upload");
                return Err(ApiError::UploadRefused(reason(&body)));
            }
            Answer::Refused(status, _) => format!("answered {status}"),
            Answer::Gone => "answered 410 Gone".into(),
            Answer::Unreachable(error) => error,
        };
        metrics::upload_hook_call("unavailable");
        tracing::warn!(error = why, on_failure = ?self.on_failure, "the upload hook could not be asked");
        match self.on_failure {
            OnHookFailure::Allow => Ok(None),
            OnHookFailure::Refuse => Err(ApiError::UploadHookUnavailable),
        }
    }
}

/// The metadata a yes attaches: its `metadata` member, a JSON object of at most
/// `MAX_METADATA_BYTES`; none for an empty body, one that is not JSON, or `null`. `Err` with
/// why for metadata that is not such an object: the hook is broken, not the upload.
fn attached(body: &[u8]) -> Result<Option<serde_json::Value>, String> {
    let Ok(Consent { metadata }) = serde_json::from_slice::<Consent>(body) else {
        return Ok(None);
    };
    match metadata {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(object @ serde_json::Value::Object(_))
            if object.to_string().len() <= MAX_METADATA_BYTES =>
        {
            Ok(Some(object))
        }
        Some(_) => Err(format!(
            "answered `metadata` that is not a JSON object of at most {MAX_METADATA_BYTES} bytes"
        )),
    }
}

/// The `reason` of a refusal's JSON body, one line of at most `MAX_REASON` characters.
fn reason(body: &[u8]) -> String {
    let reason = serde_json::from_slice::<Refusal>(body)
        .ok()
        .and_then(|refusal| refusal.reason)
        .map(|reason| {
            let line: String = reason.chars().filter(|c| !c.is_control()).collect();
            line.trim().chars().take(MAX_REASON).collect::<String>()
        })
        .filter(|reason| !reason.is_empty());
    reason.unwrap_or_else(|| NO_REASON.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yes_attaches_a_small_object_or_nothing() {
        let object = serde_json::json!({"project": "x1", "tags": ["a"]});
        let body = serde_json::json!({"metadata": object}).to_string();
        assert_eq!(attached(body.as_bytes()), Ok(Some(object)));
        for nothing in [&b""[..], b"ok", br#"{"metadata":null}"#, br#"{"other":1}"#] {
            assert_eq!(attached(nothing), Ok(None));
        }
        let big = serde_json::json!({"metadata": {"x": "y".repeat(MAX_METADATA_BYTES)}});
        for broken in [
            br#"{"metadata":[1]}"#.to_vec(),
            br#"{"metadata":"x"}"#.to_vec(),
            big.to_string().into_bytes(),
        ] {
            assert!(attached(&broken).is_err());
        }
    }

    #[test]
    fn a_refusal_says_the_hooks_reason_in_one_bounded_line() {
        assert_eq!(reason(br#"{"reason":"no PDFs here"}"#), "no PDFs here");
        assert_eq!(reason(b"{\"reason\":\"two\\nlines\"}"), "twolines");
        assert_eq!(reason(br#"{"reason":"   "}"#), NO_REASON);
        assert_eq!(reason(b"not json"), NO_REASON);
        assert_eq!(reason(br#"{"why":"x"}"#), NO_REASON);
        let long = format!(r#"{{"reason":"{}"}}"#, "é".repeat(900));
        assert_eq!(reason(long.as_bytes()).chars().count(), MAX_REASON);
    }
}

//! Webhooks signed as the Standard Webhooks specification says (standardwebhooks.com): the
//! headers `webhook-id` (the event id), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under
//! the secret's bytes), so that any of its libraries verifies what intake sends.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What a secret begins with.
const PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is `whsec_` and base64 (`intake events secret` makes one)")]
pub struct InvalidSecret;

/// A signing key: the secret's bytes.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// From `whsec_…` (the prefix may be left out, as the specification's libraries allow).
    pub fn parse(secret: &SecretString) -> Result<Self, InvalidSecret> {
        let text = secret.expose_secret();
        let text = text.strip_prefix(PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(text).map_err(|_| InvalidSecret)?;
        if bytes.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(Self(bytes))
    }

    /// A new random secret, as it is written in the configuration.
    pub fn generate() -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// The `webhook-signature` value for message `id` sent at `timestamp` with `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// How an endpoint answered.
#[derive(Debug)]
pub enum Answer {
    /// `2xx`, with its body.
    Accepted(bytes::Bytes),
    /// `410 Gone`: it wants no more.
    Gone,
    /// Any other status, with the start of its body.
    Refused(StatusCode, bytes::Bytes),
    /// No answer: refused connection, timeout, broken response.
    Unreachable(String),
}

/// POSTs `body` (JSON) to `url` signed with `key` as message `id`, waiting up to `timeout`.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    key: Option<&Key>,
    id: &str,
    body: String,
    timeout: Duration,
) -> Answer {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(key) = key {
        request = request.header(
            "webhook-signature",
            key.sign(id, timestamp, body.as_bytes()),
        );
    }
    let response = match request.body(body).send().await {
        Ok(response) => response,
        Err(error) => return Answer::Unreachable(crate::base::telemetry::cause_chain(&error)),
    };
    let status = response.status();
    let body = response.bytes().await;
    match (status, body) {
        (StatusCode::GONE, _) => Answer::Gone,
        (status, Ok(body)) if status.is_success() => Answer::Accepted(body),
        (status, Ok(body)) => Answer::Refused(status, body),
        (_, Err(error)) => Answer::Unreachable(crate::base::telemetry::cause_chain(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries (svix-webhooks' test vectors).
    #[test]
    fn signs_as_the_specification_says() {
        let key = Key::parse(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))
        .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_base64_with_or_without_their_prefix() {
        assert!(Key::parse(&SecretString::from("whsec_not base64!")).is_err());
        assert!(Key::parse(&SecretString::from("whsec_")).is_err());
        let generated = Key::generate().unwrap();
        assert!(generated.starts_with(PREFIX));
        let with = Key::parse(&SecretString::from(generated.clone())).unwrap();
        let without = Key::parse(&SecretString::from(&generated[PREFIX.len()..])).unwrap();
        assert_eq!(with.sign("id", 1, b"x"), without.sign("id", 1, b"x"));
    }
}

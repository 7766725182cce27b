//! The payment and email providers: a trait each, `simulated` and `http` implementations.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::base::configuration::{ProviderKind, ProviderSettings, SimulatedOutcome};

pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Serialize)]
pub struct Charge<'a> {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub customer_email: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Succeeded { transaction_id: String },
    Declined,
}

#[derive(Debug, Serialize)]
pub struct Email<'a> {
    pub order_id: Uuid,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
}

pub trait PaymentProvider: Send + Sync {
    fn charge<'a>(
        &'a self,
        charge: &'a Charge<'a>,
    ) -> BoxFuture<'a, Result<ChargeResult, ProviderError>>;
}

pub trait EmailProvider: Send + Sync {
    fn send<'a>(&'a self, email: &'a Email<'a>) -> BoxFuture<'a, Result<(), ProviderError>>;
}

pub fn payment(settings: &ProviderSettings, client: &reqwest::Client) -> Arc<dyn PaymentProvider> {
    match settings.kind {
        ProviderKind::Simulated => Arc::new(Simulated::new(settings)),
        ProviderKind::Http => Arc::new(Http::new(settings, client)),
    }
}

pub fn email(settings: &ProviderSettings, client: &reqwest::Client) -> Arc<dyn EmailProvider> {
    match settings.kind {
        ProviderKind::Simulated => Arc::new(Simulated::new(settings)),
        ProviderKind::Http => Arc::new(Http::new(settings, client)),
    }
}

/// Awaits a timer, never blocking the worker, then answers as configured.
pub struct Simulated {
    latency: Duration,
    outcome: SimulatedOutcome,
}

impl Simulated {
    pub fn new(settings: &ProviderSettings) -> Self {
        Self {
            latency: settings.simulated_latency(),
            outcome: settings.simulated_outcome,
        }
    }
}

impl PaymentProvider for Simulated {
    fn charge<'a>(
        &'a self,
        charge: &'a Charge<'a>,
    ) -> BoxFuture<'a, Result<ChargeResult, ProviderError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            match self.outcome {
                // Idempotent like a real provider: a retried order is the same transaction.
                SimulatedOutcome::Succeed => Ok(ChargeResult::Succeeded {
                    transaction_id: format!("sim_{}", charge.order_id.simple()),
                }),
                SimulatedOutcome::Decline => Ok(ChargeResult::Declined),
                SimulatedOutcome::Fail => Err("simulated payment failure".into()),
            }
        })
    }
}

impl EmailProvider for Simulated {
    fn send<'a>(&'a self, _: &'a Email<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            match self.outcome {
                SimulatedOutcome::Succeed => Ok(()),
                SimulatedOutcome::Decline | SimulatedOutcome::Fail => {
                    Err("simulated email failure".into())
                }
            }
        })
    }
}

/// POSTs JSON to a configured URL. Timeouts are the caller's (`tokio::time::timeout`).
pub struct Http {
    client: reqwest::Client,
    url: String,
    api_key: SecretString,
}

/// What the payment endpoint answers with a 2xx.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum PaymentReply {
    Succeeded { transaction_id: String },
    Declined,
}

impl Http {
    pub fn new(settings: &ProviderSettings, client: &reqwest::Client) -> Self {
        Self {
            client: client.clone(),
            url: settings.url.clone(),
            api_key: settings.api_key.clone(),
        }
    }

    fn post(&self, body: &impl Serialize, order_id: Uuid) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(&self.url)
            // The provider can recognise a retry of the same order.
            .header("Idempotency-Key", order_id.to_string())
            .json(body);
        match self.api_key.expose_secret() {
            "" => request,
            key => request.bearer_auth(key),
        }
    }
}

impl PaymentProvider for Http {
    fn charge<'a>(
        &'a self,
        charge: &'a Charge<'a>,
    ) -> BoxFuture<'a, Result<ChargeResult, ProviderError>> {
        Box::pin(async move {
            let response = self.post(charge, charge.order_id).send().await?;
            let status = response.status();
            if status == reqwest::StatusCode::PAYMENT_REQUIRED {
                return Ok(ChargeResult::Declined);
            }
            if !status.is_success() {
                return Err(format!("payment provider answered {status}").into());
            }
            Ok(match response.json::<PaymentReply>().await? {
                PaymentReply::Succeeded { transaction_id } => {
                    ChargeResult::Succeeded { transaction_id }
                }
                PaymentReply::Declined => ChargeResult::Declined,
            })
        })
    }
}

impl EmailProvider for Http {
    fn send<'a>(&'a self, email: &'a Email<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let status = self.post(email, email.order_id).send().await?.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("email provider answered {status}").into())
            }
        })
    }
}

//! The concurrency lesson: payment and email run at once, so checkout takes as long as the
//! slower of the two, not their sum.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::join;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    providers::{self, ChargeResult, EmailProvider, PaymentProvider, ProviderError},
    request::Order,
};
use crate::base::{configuration::CheckoutSettings, telemetry::metrics};

pub struct Checkout {
    payment: Arc<dyn PaymentProvider>,
    email: Arc<dyn EmailProvider>,
    payment_timeout: Duration,
    email_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Succeeded,
    Declined,
    Failed,
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    Sent,
    Failed,
    TimedOut,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentReport {
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmailReport {
    pub status: EmailStatus,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub payment: PaymentReport,
    pub email: EmailReport,
    pub elapsed_ms: u64,
}

impl Outcome {
    /// An order is paid exactly when its payment succeeded; the email never decides.
    pub fn order_status(&self) -> &'static str {
        if self.payment.status == PaymentStatus::Succeeded {
            "paid"
        } else {
            "payment_failed"
        }
    }
}

enum Attempt<T> {
    Done(T),
    Failed(ProviderError),
    TimedOut,
}

impl Checkout {
    pub fn new(
        payment: Arc<dyn PaymentProvider>,
        email: Arc<dyn EmailProvider>,
        payment_timeout: Duration,
        email_timeout: Duration,
    ) -> Self {
        Self {
            payment,
            email,
            payment_timeout,
            email_timeout,
        }
    }

    pub fn from_settings(settings: &CheckoutSettings, client: &reqwest::Client) -> Self {
        Self::new(
            providers::payment(&settings.payment, client),
            providers::email(&settings.email, client),
            settings.payment.timeout(),
            settings.email.timeout(),
        )
    }

    pub async fn run(&self, order_id: Uuid, order: &Order) -> Outcome {
        let started = Instant::now();
        let charge = providers::Charge {
            order_id,
            amount_cents: order.amount_cents,
            currency: &order.currency,
            customer_email: &order.customer_email,
        };
        let text = format!("We received your order {order_id}.");
        let email = providers::Email {
            order_id,
            to: &order.customer_email,
            subject: "Your order",
            text: &text,
        };
        let ((payment, payment_took), (email, email_took)) = join(
            timed(
                "payment",
                self.payment_timeout,
                self.payment.charge(&charge),
            ),
            timed("email", self.email_timeout, self.email.send(&email)),
        )
        .await;
        let payment = match payment {
            Attempt::Done(ChargeResult::Succeeded { transaction_id }) => {
                (PaymentStatus::Succeeded, Some(transaction_id))
            }
            Attempt::Done(ChargeResult::Declined) => (PaymentStatus::Declined, None),
            Attempt::Failed(error) => {
                tracing::warn!(%order_id, %error, "payment provider failed");
                (PaymentStatus::Failed, None)
            }
            Attempt::TimedOut => (PaymentStatus::TimedOut, None),
        };
        let email = match email {
            Attempt::Done(()) => EmailStatus::Sent,
            Attempt::Failed(error) => {
                tracing::warn!(%order_id, %error, "email provider failed");
                EmailStatus::Failed
            }
            Attempt::TimedOut => EmailStatus::TimedOut,
        };
        metrics::provider_call("payment", payment.0.as_str(), payment_took);
        metrics::provider_call("email", email.as_str(), email_took);
        Outcome {
            payment: PaymentReport {
                status: payment.0,
                transaction_id: payment.1,
                elapsed_ms: millis(payment_took),
            },
            email: EmailReport {
                status: email,
                elapsed_ms: millis(email_took),
            },
            elapsed_ms: millis(started.elapsed()),
        }
    }
}

/// Runs one provider call under its own timeout and measures it.
async fn timed<T>(
    provider: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> (Attempt<T>, Duration) {
    let started = Instant::now();
    let span = tracing::info_span!("checkout.provider", provider);
    let attempt = match tokio::time::timeout(limit, call).instrument(span).await {
        Ok(Ok(value)) => Attempt::Done(value),
        Ok(Err(error)) => Attempt::Failed(error),
        Err(_) => Attempt::TimedOut,
    };
    (attempt, started.elapsed())
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::configuration::{ProviderKind, ProviderSettings, SimulatedOutcome};

    fn simulated(latency_ms: u64, outcome: SimulatedOutcome) -> ProviderSettings {
        ProviderSettings {
            kind: ProviderKind::Simulated,
            url: String::new(),
            api_key: String::new().into(),
            timeout_ms: 5_000,
            simulated_latency_ms: latency_ms,
            simulated_outcome: outcome,
        }
    }

    fn checkout(payment: ProviderSettings, email: ProviderSettings) -> Checkout {
        Checkout::from_settings(
            &CheckoutSettings { payment, email },
            &reqwest::Client::new(),
        )
    }

    fn order() -> Order {
        super::super::request::parse(
            br#"{"customer_email":"a@example.com","amount_cents":1299,"currency":"EUR","items":[{"sku":"B","quantity":1}]}"#,
        )
        .unwrap()
    }

    /// Virtual time only moves when every task waits on a timer, so the elapsed time is exact:
    /// sequential awaits would take 1500 ms, concurrent ones take the slower call's 1000 ms.
    #[tokio::test(start_paused = true)]
    async fn payment_and_email_run_concurrently_taking_the_slower_ones_time() {
        let checkout = checkout(
            simulated(1000, SimulatedOutcome::Succeed),
            simulated(500, SimulatedOutcome::Succeed),
        );
        let started = Instant::now();

        let outcome = checkout.run(Uuid::now_v7(), &order()).await;

        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        assert_eq!(outcome.elapsed_ms, 1000);
        assert_eq!(outcome.payment.elapsed_ms, 1000);
        assert_eq!(outcome.email.elapsed_ms, 500);
        assert_eq!(outcome.payment.status, PaymentStatus::Succeeded);
        assert!(outcome.payment.transaction_id.unwrap().starts_with("sim_"));
        assert_eq!(outcome.email.status, EmailStatus::Sent);
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_has_its_own_timeout() {
        let mut slow_payment = simulated(10_000, SimulatedOutcome::Succeed);
        slow_payment.timeout_ms = 2_000;
        let checkout = checkout(slow_payment, simulated(500, SimulatedOutcome::Succeed));

        let outcome = checkout.run(Uuid::now_v7(), &order()).await;

        assert_eq!(outcome.payment.status, PaymentStatus::TimedOut);
        assert_eq!(outcome.payment.elapsed_ms, 2_000);
        assert_eq!(outcome.email.status, EmailStatus::Sent);
        assert_eq!(outcome.elapsed_ms, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn declines_and_failures_are_reported_per_provider() {
        let checkout = checkout(
            simulated(10, SimulatedOutcome::Decline),
            simulated(10, SimulatedOutcome::Fail),
        );
        let outcome = checkout.run(Uuid::now_v7(), &order()).await;
        assert_eq!(outcome.payment.status, PaymentStatus::Declined);
        assert_eq!(outcome.email.status, EmailStatus::Failed);
    }
}

//! What every handler shares, built by `startup` and read by the handler modules.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

use crate::{
    access::{auth::Auth, rate_limit::RateLimit},
    api::{checkout, uploads},
    base::{
        configuration::{LessonSettings, TusSettings},
        in_flight::InFlight,
    },
    storage::Storage,
};

/// What every handler shares.
pub struct AppState {
    pub pool: PgPool,
    /// Quota counters (see `db::bookkeeping_pool`).
    pub bookkeeping: PgPool,
    pub auth: Auth,
    pub rate_limit: RateLimit,
    /// Bytes each user may keep stored.
    pub quota: Option<u64>,
    pub storage: Arc<Storage>,
    pub limits: uploads::Limits,
    /// Commits the rows of uploads that finish together in one statement.
    pub committer: crate::catalog::committer::Committer,
    pub tus: TusSettings,
    /// The resumable uploads being written here.
    pub tus_writers: Arc<crate::api::tus::writers::Writers>,
    pub uploads: InFlight,
    pub checkout: checkout::Checkout,
    /// The idempotency keys of the checkouts running here.
    pub idempotency: checkout::KeysInUse,
    pub request_body_timeout: Duration,
    pub lessons: LessonSettings,
    /// One client (one connection pool) for every outbound call.
    pub http: reqwest::Client,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub metrics_token: secrecy::SecretString,
}

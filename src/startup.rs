//! Builds the application: pool, migrations, storage, sweep, routes, and the HTTP server.

use std::{io, net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App,
    dev::Server,
    middleware::{ErrorHandlers, from_fn},
    web,
};
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinHandle};
use tracing_actix_web::TracingLogger;

use crate::{
    access::{auth::Auth, quota, rate_limit::RateLimit},
    api::{
        checkout::{self, Checkout},
        tus, uploads,
    },
    base::{
        configuration::{Settings, SettingsError},
        db,
        error::ApiError,
        heap,
        in_flight::InFlight,
        problem, telemetry,
    },
    routes, server,
    state::AppState,
    storage::{
        self, Storage,
        sweep::{self, SweepError},
    },
};

/// How often committed uploads are counted in their users' usage.
const USAGE_APPLYING: Duration = Duration::from_secs(1);
/// How often buckets that have refilled are forgotten.
const RATE_LIMIT_PRUNING: Duration = Duration::from_secs(60);
/// How often freed heap memory is handed back to the system.
const HEAP_TRIMMING: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Database(#[from] db::ConnectError),
    #[error("could not read the users table")]
    Users(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] storage::OpenError),
    #[error("could not repair the storage at start-up")]
    Sweep(#[from] SweepError),
    #[error("could not listen on {0} (server.host, server.port)")]
    Bind(String, #[source] io::Error),
    #[error("could not build the outbound HTTP client")]
    HttpClient(#[from] reqwest::Error),
    #[error("the server stopped with an error")]
    Serve(#[from] io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// The storage sweep, usage applying and the rate limiter's pruning, stopped with the server.
    background: Vec<JoinHandle<()>>,
    uploads: InFlight,
    pool: PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Before the start-up sweep, whose work is counted too.
        let metrics = telemetry::metrics::recorder();
        let pool = db::connect(&settings.database).await?;
        let lease = settings.database.connect_options()?;
        let storage = Arc::new(Storage::open(&settings.storage, &pool, lease).await?);
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let bind = |e| StartupError::Bind(address.clone(), e);
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        // Leftovers of a crash are settled before the first request can see them.
        sweep::sweep(&storage, &pool).await?;
        let mut background = vec![sweep::spawn_periodic(
            Arc::clone(&storage),
            pool.clone(),
            Duration::from_secs(settings.storage.sweep_interval_secs.max(1)),
        )];
        let bookkeeping = db::bookkeeping_pool(&settings.database)?;
        background.push(quota::spawn_applying(bookkeeping.clone(), USAGE_APPLYING));
        let rate_limit = RateLimit::new(&settings.rate_limit);
        background.extend(rate_limit.spawn_pruning(RATE_LIMIT_PRUNING));

        background.push(telemetry::metrics::spawn_upkeep(metrics.clone()));
        background.push(heap::spawn_trimming(HEAP_TRIMMING));
        let uploads = InFlight::default();
        let tus_writers = Arc::new(tus::writers::Writers::default());
        background.push(tus::writers::spawn_listening(
            pool.clone(),
            Arc::clone(&tus_writers),
        ));
        let http = reqwest::Client::builder()
            .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let state = web::Data::new(AppState {
            auth: Auth::new(settings.auth.enabled, &pool).await?,
            rate_limit,
            quota: settings.auth.quota(),
            pool: pool.clone(),
            bookkeeping,
            idempotency: checkout::KeysInUse::new(storage.instance()),
            storage,
            limits: uploads::Limits::new(
                settings.upload.clone(),
                settings.storage.inline_max_bytes,
            ),
            committer: crate::catalog::committer::Committer::start(pool.clone()),
            tus: settings.tus.clone(),
            tus_writers,
            uploads: uploads.clone(),
            checkout: Checkout::from_settings(&settings.checkout, &http),
            request_body_timeout: settings.server.request_body_timeout(),
            lessons: settings.lessons.clone(),
            http,
            metrics,
            metrics_token: settings.telemetry.metrics_token.clone(),
        });

        let document = web::Data::new(crate::api::ops::docs::Rendered::new(routes::render(
            &settings,
        )));
        let server = server::serve(listener, &settings, move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|_, _| ApiError::NotFound("resource").into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError::InvalidRequest(format!("invalid query: {error}")).into()
                }))
                .app_data(document.clone())
                .configure(routes::register)
                .wrap(ErrorHandlers::new().default_handler(problem::render_framework_errors))
                .wrap(from_fn(telemetry::metrics::record_request))
                .wrap(from_fn(telemetry::echo_request_id))
                .wrap(TracingLogger::<telemetry::RequestSpan>::new())
        })
        .map_err(bind)?;
        Ok(Self {
            port,
            server,
            background,
            uploads,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The number of uploads being received, as it changes.
    pub fn uploads_in_flight(&self) -> watch::Receiver<usize> {
        self.uploads.subscribe()
    }

    /// Serves until SIGTERM/SIGINT, then lets in-flight requests finish (up to
    /// `server.shutdown_timeout_secs`).
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let result = self.server.await;
        self.background.iter().for_each(JoinHandle::abort);
        self.pool.close().await;
        result
    }
}

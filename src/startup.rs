//! Builds the application: pool, migrations, storage, sweep, routes, and the HTTP server.

use std::{io, net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App,
    dev::Server,
    middleware::{Condition, ErrorHandlers, from_fn},
    web,
};
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinHandle};
use tracing_actix_web::TracingLogger;

use crate::{
    access::{
        auth::Auth,
        cors::{self, CorsPolicy, CorsSettingsError},
        hosts::{self, Hosts},
        quota::{self, Quota},
        rate_limit::RateLimit,
        upload_slots::UploadSlots,
    },
    api::{
        checkout::{Checkout, Checkouts, KeysInUse},
        lessons::Lessons,
        ops::{docs::Rendered, health::Health, metrics::Metrics},
        resumable::Resumable,
    },
    base::{
        configuration::{Settings, SettingsError},
        db,
        error::{ApiError, render_framework_errors},
        heap,
        in_flight::InFlight,
        telemetry,
    },
    catalog::committer::Committer,
    events::{self, EventsError, hook::Hook, webhook::InvalidSecret},
    ingest::{Ingest, Limits},
    resumable::{self, writers::Writers},
    routes, server,
    storage::{self, RepairError, Storage},
    sweep,
};

/// How often committed uploads are counted in their users' usage.
const USAGE_APPLYING: Duration = Duration::from_secs(1);
/// How often buckets that have refilled are forgotten.
const RATE_LIMIT_PRUNING: Duration = Duration::from_secs(60);
/// How often freed heap memory is handed back to the system.
const HEAP_TRIMMING: Duration = Duration::from_secs(10);
/// How often connections that clients broke are told in the log (at most one line each time).
const CLIENT_FAULTS_REPORTING: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Cors(#[from] CorsSettingsError),
    #[error(transparent)]
    Database(#[from] db::ConnectError),
    #[error("could not read the users table")]
    Users(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] storage::OpenError),
    #[error("could not repair the storage at start-up")]
    Sweep(#[from] RepairError),
    #[error("could not listen on {0} (server.host, server.port)")]
    Bind(String, #[source] io::Error),
    #[error("could not build the outbound HTTP client")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("events.pre_upload.secret: {0}")]
    HookSecret(#[from] InvalidSecret),
    #[error("the server stopped with an error")]
    Serve(#[from] io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// The storage sweep, usage applying and the rate limiter's pruning, stopped with the server.
    background: Vec<JoinHandle<()>>,
    in_flight: InFlight,
    pool: PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Before the start-up sweep, whose work is counted too.
        let metrics = telemetry::metrics::recorder();
        let cors = CorsPolicy::new(&settings.http.cors, settings.auth.enabled)?;
        let pool = db::connect(&settings.database).await?;
        let liveness = settings.database.connect_options()?;
        let storage = Arc::new(Storage::open(&settings.storage, &pool, liveness).await?);
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
        background.push(telemetry::client_faults::spawn_reporting(
            CLIENT_FAULTS_REPORTING,
        ));
        let in_flight = InFlight::default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
            .build()?;
        background.extend(events::start(&settings.events, bookkeeping.clone(), &http).await?);

        // What the areas share: the pool, the storage, the quota.
        let quota = Quota::new(bookkeeping, settings.auth.quota());
        let ingest = web::Data::new(Ingest {
            pool: pool.clone(),
            storage: Arc::clone(&storage),
            quota: quota.clone(),
            limits: Limits::new(settings.upload.clone(), settings.storage.inline_max_bytes),
            in_flight: in_flight.clone(),
            committer: Committer::start(pool.clone()),
            slots: UploadSlots::new(settings.upload.max_in_flight_per_user),
            hook: Hook::new(&settings.events.pre_upload, &http, pool.clone())?,
        });
        // Each area's own.
        let auth = web::Data::new(Auth::new(settings.auth.enabled, pool.clone()).await?);
        let rate_limit = web::Data::new(rate_limit);
        let allowed_hosts = web::Data::new(Hosts::new(
            settings.auth.enabled,
            &settings.server.allowed_hosts,
        ));
        let resumable_uploads = web::Data::new(Resumable {
            ingest: ingest.clone(),
            settings: settings.tus.clone(),
            writers: Arc::new(Writers::default()),
        });
        background.push(resumable::writers::spawn_listening(
            pool.clone(),
            Arc::clone(&resumable_uploads.writers),
        ));
        let checkouts = web::Data::new(Checkouts {
            providers: Checkout::from_settings(&settings.checkout, &http),
            keys: KeysInUse::new(storage.instance()),
            body_timeout: settings.server.request_body_timeout(),
        });
        let lessons = web::Data::new(Lessons::new(settings.lessons.clone(), http));
        let metrics = web::Data::new(Metrics {
            recorder: metrics,
            token: settings.telemetry.metrics_token.clone(),
        });
        let document = web::Data::new(Rendered::new(routes::render(&settings)));
        let (pool_data, storage, quota) = (
            web::Data::new(pool.clone()),
            web::Data::from(storage),
            web::Data::new(quota),
        );
        let in_flight_data = web::Data::new(in_flight.clone());
        let sharing = web::Data::new(settings.sharing.clone());
        let upload_routes = web::Data::new(routes::upload_routes());
        let health = web::Data::new(Health {
            timeout: Duration::from_millis(settings.health.timeout_ms.max(1)),
        });

        let server = server::serve(listener, &settings, move || {
            App::new()
                .app_data(pool_data.clone())
                .app_data(storage.clone())
                .app_data(quota.clone())
                .app_data(in_flight_data.clone())
                .app_data(ingest.clone())
                .app_data(auth.clone())
                .app_data(rate_limit.clone())
                .app_data(allowed_hosts.clone())
                .app_data(resumable_uploads.clone())
                .app_data(sharing.clone())
                .app_data(checkouts.clone())
                .app_data(lessons.clone())
                .app_data(metrics.clone())
                .app_data(upload_routes.clone())
                .app_data(health.clone())
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|_, _| ApiError::NotFound("resource").into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError::InvalidRequest(format!("invalid query: {error}")).into()
                }))
                .app_data(document.clone())
                .configure(routes::register)
                .wrap(ErrorHandlers::new().default_handler(render_framework_errors))
                .wrap(from_fn(hosts::check))
                // Outside the host check and the handlers, so that their refusals carry the
                // CORS headers too; inside the metrics and the log, which see preflights.
                .wrap(Condition::new(cors.enabled(), cors.layer()))
                .wrap(Condition::new(
                    cors.enabled(),
                    from_fn(cors::explain_refusals),
                ))
                .wrap(from_fn(telemetry::metrics::record_request))
                .wrap(from_fn(telemetry::echo_request_id))
                .wrap(TracingLogger::<telemetry::RequestSpan>::new())
        })
        .map_err(bind)?;
        Ok(Self {
            port,
            server,
            background,
            in_flight,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The number of uploads being received, as it changes.
    pub fn uploads_in_flight(&self) -> watch::Receiver<usize> {
        self.in_flight.subscribe()
    }

    /// Serves until SIGTERM/SIGINT, then lets in-flight requests finish (up to
    /// `server.shutdown_timeout_secs`).
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let result = self.server.await;
        self.background.iter().for_each(JoinHandle::abort);
        telemetry::client_faults::report();
        self.pool.close().await;
        result
    }
}

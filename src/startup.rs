//! Builds the application: pool, migrations, storage, sweep, routes, and the HTTP server.

use std::{io, net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App, HttpServer,
    dev::Server,
    middleware::{ErrorHandlers, from_fn},
    web,
};
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinHandle};
use tracing_actix_web::TracingLogger;

use crate::{
    configuration::{Settings, SettingsError},
    db,
    error::ApiError,
    files, health, problem,
    storage::{
        Storage,
        sweep::{self, SweepError},
    },
    telemetry, uploads,
};

/// What every handler shares.
pub struct AppState {
    pub pool: PgPool,
    pub storage: Arc<Storage>,
    pub limits: uploads::Limits,
    pub uploads: uploads::InFlight,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("could not apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not open the storage root")]
    Storage(#[source] io::Error),
    #[error("could not repair the storage at start-up")]
    Sweep(#[from] SweepError),
    #[error("could not listen on the configured address")]
    Bind(#[source] io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    sweeper: JoinHandle<()>,
    uploads: uploads::InFlight,
    pool: PgPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool).await?;
        let root = settings.storage.root.clone();
        let storage = tokio::task::spawn_blocking(move || Storage::open(&root))
            .await
            .map_err(|e| StartupError::Storage(io::Error::other(e)))?
            .map_err(StartupError::Storage)?;
        let storage = Arc::new(storage);
        // Leftovers of a crash are settled before the first request can see them.
        sweep::sweep(&storage, &pool).await?;
        let sweeper = sweep::spawn_periodic(
            Arc::clone(&storage),
            pool.clone(),
            Duration::from_secs(settings.storage.sweep_interval_secs.max(1)),
        );

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .map_err(StartupError::Bind)?;
        let port = listener.local_addr().map_err(StartupError::Bind)?.port();
        let uploads = uploads::InFlight::default();
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            storage,
            limits: uploads::Limits::new(settings.upload.clone()),
            uploads: uploads.clone(),
        });

        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|_, _| ApiError::NotFound("resource").into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError::InvalidRequest(format!("invalid query: {error}")).into()
                }))
                .configure(health::routes)
                .configure(uploads::routes)
                .configure(files::routes)
                .wrap(ErrorHandlers::new().default_handler(problem::render_framework_errors))
                .wrap(from_fn(telemetry::echo_request_id))
                .wrap(TracingLogger::default())
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)
        .map_err(StartupError::Bind)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            sweeper,
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
        self.sweeper.abort();
        self.pool.close().await;
        result
    }
}

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use intake::{
    api::ops::health,
    base::{configuration::Settings, db, telemetry, telemetry::cause_chain},
    cli::{
        admin::{self, TokensCommand, UsersCommand},
        client,
        events::{self, EventsCommand},
    },
    routes,
    startup::{Application, StartupError},
};

/// intake: a streaming file upload service with metadata in Postgres.
///
/// Settings: built-in defaults (config/base.toml and config/$APP_ENVIRONMENT.toml, `local` or
/// `production`), then `--config FILE`, then APP__SECTION__KEY environment variables (see
/// README).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML file over the built-in defaults (same keys as config/base.toml); environment
    /// variables still win over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP until SIGTERM (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the local server's /health/ready; exit 0 when it answers 200, 1 otherwise.
    Healthcheck,
    /// Manage users (the owners of files and tokens).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// See the event deliveries not made (webhooks, NATS), replay failed ones, make a webhook
    /// secret.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Print the OpenAPI document (the one served at /openapi.json) and exit.
    Openapi,
    /// Upload files to a running intake with the resumable protocol (tus): progress bars, and
    /// an interrupted upload continues where it stopped on the next run.
    Upload(client::UploadArgs),
    /// Make a share link for one of your files: a URL that downloads it without a token until
    /// it expires.
    Share(client::ShareArgs),
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // The client needs nothing of the server's configuration: its flags and INTAKE_* only.
    match command {
        Command::Upload(args) => return exit(client::upload(args).await),
        Command::Share(args) => return exit(client::share(args).await),
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => exit(db::migrate_once(&settings.database).await),
        Command::Healthcheck => exit(health::check_local(&settings.server).await),
        Command::Users { command } => {
            exit(admin::users(command, &settings.database, &mut std::io::stdout()).await)
        }
        Command::Upload(_) | Command::Share(_) => unreachable!("answered above"),
        Command::Openapi => {
            print!("{}", routes::render(&settings));
            ExitCode::SUCCESS
        }
        Command::Events { command } => {
            exit(events::events(command, &settings.database, &mut std::io::stdout()).await)
        }
        Command::Tokens { command } => {
            let (mut out, mut note) = (std::io::stdout(), std::io::stderr());
            exit(admin::tokens(command, &settings.database, &mut out, &mut note).await)
        }
    }
}

fn exit(result: Result<(), impl Into<Box<dyn std::error::Error>>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&*error.into()),
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let tracing = match telemetry::init(&settings.log, &settings.telemetry) {
        Ok(tracing) => tracing,
        Err(error) => return fail(&error),
    };
    let served = match Application::build(settings).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "intake is listening");
            app.run_until_stopped().await.map_err(StartupError::from)
        }
        Err(error) => Err(error),
    };
    // The exporter's last send blocks; the runtime's threads must not.
    let flushed = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    match (served, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(error), _) => fail(&error),
        (Ok(()), Err(error)) => fail(&error),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("intake: {}", cause_chain(error));
    ExitCode::FAILURE
}

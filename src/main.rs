use intake::{configuration::Settings, problem::cause_chain, startup::Application, telemetry};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("intake: {}", cause_chain(&error));
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log, std::io::stdout);
    let result = match Application::build(settings).await {
        Ok(app) => {
            tracing::info!(port = app.port(), "intake is listening");
            app.run_until_stopped().await.map_err(Into::into)
        }
        Err(error) => Err(Box::<dyn std::error::Error>::from(error)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %cause_chain(error.as_ref()), "intake stopped on an error");
            std::process::ExitCode::FAILURE
        }
    }
}

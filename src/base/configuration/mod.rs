//! Settings: `config/base.toml`, then `config/{APP_ENVIRONMENT}.toml` (both built into the
//! binary), then an optional file of the operator's (`intake --config FILE`), then
//! `APP__SECTION__KEY` environment variables. This is the only place that reads configuration.

mod events;
mod sections;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub use self::{events::*, sections::*};

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub upload: UploadSettings,
    pub tus: TusSettings,
    pub sharing: SharingSettings,
    pub checkout: CheckoutSettings,
    pub lessons: LessonSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub health: HealthSettings,
    pub events: EventSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("APP_ENVIRONMENT must be `local` or `production`, not `{0}`")]
    UnknownEnvironment(String),
    #[error("invalid configuration")]
    Invalid(#[from] config::ConfigError),
    #[error("could not read the configuration file {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("invalid database.url")]
    DatabaseUrl(#[source] sqlx::Error),
}

/// The defaults, built in so that the binary runs from any directory.
const BASE: &str = include_str!("../../../config/base.toml");
const LOCAL: &str = include_str!("../../../config/local.toml");
const PRODUCTION: &str = include_str!("../../../config/production.toml");

impl Settings {
    /// The built-in defaults for `APP_ENVIRONMENT` (`local` unless set), then `extra` (the
    /// operator's own file, when given), then the process environment.
    pub fn load(extra: Option<&Path>) -> Result<Self, SettingsError> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        let defaults = match environment.as_str() {
            "local" => LOCAL,
            "production" => PRODUCTION,
            _ => return Err(SettingsError::UnknownEnvironment(environment)),
        };
        let extra = extra
            .map(|path| {
                std::fs::read_to_string(path).map_err(|e| SettingsError::Read(path.into(), e))
            })
            .transpose()?;
        Self::assemble(
            &[BASE, defaults, extra.as_deref().unwrap_or("")],
            std::env::vars().collect(),
        )
    }

    /// Reads the settings from an explicit config directory, environment name and variables, so
    /// that tests can check what a deployment (e.g. `docker-compose.yml`) would produce.
    pub fn load_from(
        dir: &Path,
        environment: &str,
        vars: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        if !matches!(environment, "local" | "production") {
            return Err(SettingsError::UnknownEnvironment(environment.into()));
        }
        let read = |name: String| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| SettingsError::Read(path, e))
        };
        let base = read("base.toml".into())?;
        let defaults = read(format!("{environment}.toml"))?;
        Self::assemble(&[&base, &defaults], vars)
    }

    /// TOML texts, each over the one before, then `APP__…` variables over them all.
    fn assemble(texts: &[&str], vars: HashMap<String, String>) -> Result<Self, SettingsError> {
        let builder = texts
            .iter()
            .fold(config::Config::builder(), |builder, text| {
                builder.add_source(config::File::from_str(text, config::FileFormat::Toml))
            });
        let settings = builder
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    // An empty variable (e.g. from an unset compose default) means "not set".
                    .ignore_empty(true)
                    .list_separator(",")
                    .with_list_parse_key("upload.allowed_content_types")
                    .with_list_parse_key("server.allowed_hosts")
                    .with_list_parse_key("http.cors.allowed_origins")
                    .with_list_parse_key("rate_limit.trusted_proxies")
                    .source(Some(vars)),
            )
            .build()?
            .try_deserialize::<Settings>()?;
        settings.database.connect_options()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn the_built_in_defaults_are_the_config_folder() {
        for (environment, text) in [("local", LOCAL), ("production", PRODUCTION)] {
            let built_in = Settings::assemble(&[BASE, text], HashMap::new()).unwrap();
            let read = Settings::load_from(&config_dir(), environment, HashMap::new()).unwrap();
            assert_eq!(
                format!("{built_in:?}"),
                format!("{read:?}"),
                "{environment}"
            );
        }
    }

    #[test]
    fn an_extra_file_goes_over_the_defaults_and_variables_over_it() {
        let mut extra = tempfile::NamedTempFile::new().unwrap();
        writeln!(extra, "[server]\nport = 9001\nworkers = 3").unwrap();
        let text = std::fs::read_to_string(extra.path()).unwrap();
        let vars = HashMap::from([("APP__SERVER__PORT".to_owned(), "9002".to_owned())]);

        let settings = Settings::assemble(&[BASE, LOCAL, &text], vars).unwrap();

        assert_eq!(settings.server.port, 9002);
        assert_eq!(settings.server.workers, 3);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_from_a_list_or_a_variable() {
        let vars = HashMap::from([
            (
                "APP__RATE_LIMIT__TRUSTED_PROXIES".to_owned(),
                "10.0.0.0/8,203.0.113.10".to_owned(),
            ),
            (
                "APP__RATE_LIMIT__FORWARDED_HEADER".to_owned(),
                "forwarded".to_owned(),
            ),
        ]);
        let settings = Settings::assemble(&[BASE, LOCAL], vars).unwrap();
        let trusted: Vec<String> = (settings.rate_limit.trusted_proxies.iter())
            .map(ToString::to_string)
            .collect();
        assert_eq!(trusted, ["10.0.0.0/8", "203.0.113.10/32"]);
        assert_eq!(
            settings.rate_limit.forwarded_header,
            ForwardedHeader::Forwarded
        );

        let file = "[rate_limit]\ntrusted_proxies = [\"::1\", \"proxy.example\"]";
        let error = Settings::assemble(&[BASE, LOCAL, file], HashMap::new()).unwrap_err();
        assert!(format!("{error:?}").contains("proxy.example"), "{error:?}");
    }
}

//! The settings' sections, one struct each, as `config/base.toml` lays them out.

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

use super::SettingsError;

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// With auth off, the hosts besides loopback ones that requests may be addressed to.
    pub allowed_hosts: Vec<String>,
    pub port: u16,
    pub workers: usize,
    /// Threads each worker may run blocking work on (disk writes, hashing); 0 = actix-web's
    /// default (512 shared by the workers).
    pub max_blocking_threads: usize,
    pub shutdown_timeout_secs: u64,
    /// How long a request body that is not an upload (checkout JSON) may take to arrive.
    pub request_body_timeout_secs: u64,
}

/// HTTP behaviour beyond the listener: cross-origin requests.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub cors: CorsSettings,
}

/// Which web applications on other origins may call the API from a browser.
#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    /// Origins as browsers send them (`https://app.example.com`), or `["*"]` (auth on only);
    /// empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    pub kind: StorageKind,
    /// Where `fs` keeps objects and its journal.
    pub root: PathBuf,
    pub sweep_interval_secs: u64,
    /// Files up to this size are stored in Postgres with their row; 0 turns that off.
    pub inline_max_bytes: u64,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Fs,
    S3,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, R2).
#[derive(Debug, Clone, Deserialize)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty: AWS S3 in `region`. Otherwise the server's URL, e.g. `http://minio:9000`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// `bucket` in the path (`endpoint/bucket/key`) rather than in the host name: what MinIO
    /// and most self-hosted servers need.
    pub path_style: bool,
    /// Put before every object key, e.g. `intake/`.
    pub prefix: String,
    /// Bytes per multipart part (S3's minimum is 5 MiB); an object smaller than one part is
    /// stored with a single PUT.
    pub part_size_bytes: usize,
    /// Parts of one upload being sent at once; memory per upload is at most
    /// `part_size_bytes` × (this + 1), and all uploads' within `buffer_memory_bytes`.
    pub parts_in_flight: usize,
    /// Memory for the parts of every upload together (at least two parts); beyond it a part
    /// being filled spills to `spill_dir`.
    pub buffer_memory_bytes: usize,
    /// Where parts spill when the memory budget is full; empty: the system's temporary
    /// directory.
    pub spill_dir: String,
    /// A request to the bucket that brings no byte for this long fails (and is retried once
    /// within the retry window): a bucket that hangs is answered within about this.
    pub read_timeout_secs: u64,
    /// The longest any request but a download may take in all. A download has no total bound,
    /// only `read_timeout_secs` of silence, so that a slow client's long download finishes.
    pub request_timeout_secs: u64,
    /// tus concatenation copies the partial uploads into the file's parts inside the bucket
    /// (UploadPartCopy); off for a provider without it, where concatenation is refused.
    pub copy_parts: bool,
}

/// Share links (`/files/{id}/links`).
#[derive(Debug, Clone, Deserialize)]
pub struct SharingSettings {
    /// The longest a link may live; 0 = no bound, and a link may live until it is revoked.
    pub max_expiry_secs: u64,
    /// A link's lifetime when its creation names none; 0 = until revoked (only with no bound).
    pub default_expiry_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UploadSettings {
    pub max_file_bytes: u64,
    pub max_files: usize,
    pub max_request_bytes: u64,
    pub idle_timeout_secs: u64,
    /// The slowest body kept: averaged over each window, after the grace period; 0 = no minimum.
    pub min_bytes_per_sec: u64,
    pub min_rate_window_secs: u64,
    pub min_rate_grace_secs: u64,
    pub allowed_content_types: Vec<String>,
    /// Uploads (multipart requests, PATCHes and creations with data) one user, or one client
    /// address acting as `anonymous`, may have in flight on an instance; 0 = no cap.
    pub max_in_flight_per_user: usize,
    /// The longest lifetime a file may be given (at its upload, or by `PATCH /files/{id}`);
    /// 0 = no bound, and a file may also live until it is deleted.
    pub max_lifetime_secs: u64,
    /// The lifetime of a file whose upload asks for none; 0 = until deleted, or the bound when
    /// there is one.
    pub default_lifetime_secs: u64,
}

/// Resumable uploads (`/tus/`).
#[derive(Debug, Clone, Deserialize)]
pub struct TusSettings {
    /// How long an unfinished upload is kept after its last PATCH (its creation at first).
    pub expiry_secs: u64,
    /// A PATCH records its progress every this many bytes, so that a crash loses at most this
    /// much of it (clients such as tus-js-client send a whole file in one PATCH by default).
    pub checkpoint_bytes: u64,
    /// Unfinished uploads (not expired) a user may hold; a creation beyond is refused. 0 = no cap.
    pub max_unfinished_per_user: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSettings {
    pub payment: ProviderSettings,
    pub email: ProviderSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    pub url: String,
    /// Sent as `Authorization: Bearer …` by the `http` kind when not empty.
    pub api_key: SecretString,
    pub timeout_ms: u64,
    pub simulated_latency_ms: u64,
    pub simulated_outcome: SimulatedOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Simulated,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimulatedOutcome {
    Succeed,
    Decline,
    Fail,
}

impl ProviderSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn simulated_latency(&self) -> Duration {
        Duration::from_millis(self.simulated_latency_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LessonSettings {
    /// Off: `/slow`, `/blocking`, `/external` and `/users/{id}` answer `404`.
    pub enabled: bool,
    pub slow_max_ms: u64,
    pub blocking_max_ms: u64,
    /// `/blocking` lessons holding a blocking thread at once, at least 1.
    pub blocking_max_concurrent: usize,
    pub external_url: String,
    pub external_timeout_ms: u64,
}

/// The readiness probe (`/health/ready`).
#[derive(Debug, Clone, Deserialize)]
pub struct HealthSettings {
    /// Postgres and the storage each answer within this, or readiness is `503`.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Off: every request acts as the `anonymous` user and `Authorization` is ignored.
    pub enabled: bool,
    /// Bytes each user may keep stored; 0 = no quota.
    pub default_quota_bytes: u64,
}

impl TusSettings {
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(self.expiry_secs)
    }
}

impl AuthSettings {
    pub fn quota(&self) -> Option<u64> {
        (self.default_quota_bytes > 0).then_some(self.default_quota_bytes)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Sustained requests per minute per token (or per client address without a valid token);
    /// 0 = no limit.
    pub per_minute: u32,
    /// Requests allowed at once before the sustained rate applies.
    pub burst: u32,
    /// Take the client address from `forwarded_header`: only behind a proxy that appends to it,
    /// since clients can write it.
    pub trust_forwarded_for: bool,
    /// The proxies in front (addresses or networks, `10.0.0.0/8`). Empty: one proxy, the one
    /// the request comes from. Else a request from elsewhere is keyed by its own address, and
    /// the header's entries these added are skipped, from the right.
    #[serde(deserialize_with = "addresses_or_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which header the proxies append to.
    pub forwarded_header: ForwardedHeader,
}

/// `10.0.0.7` (one address) or `10.0.0.0/8`.
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{text}` is not an address or a network"))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client, for=proxy1, …`
    Forwarded,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// When not empty, `GET /metrics` wants `Authorization: Bearer <this>`.
    pub metrics_token: SecretString,
    /// An OTLP/HTTP collector (`http://collector:4318`); empty = no trace export.
    pub otlp_endpoint: String,
    /// The `service.name` the exported spans carry.
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> Result<PgConnectOptions, SettingsError> {
        self.url
            .expose_secret()
            .parse()
            .map_err(SettingsError::DatabaseUrl)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_secs)
    }
}

impl ServerSettings {
    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_secs(self.request_body_timeout_secs)
    }
}

impl UploadSettings {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

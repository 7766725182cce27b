//! The harness: a real server on port 0 with its own Postgres database and storage root, and
//! requests to it; what a test sends (`bodies`) and how it looks at what was stored
//! (`stored`) are beside it.

mod bodies;
mod ports;
mod stored;

use std::{collections::HashMap, path::Path, sync::LazyLock};

use intake::{
    access::auth::store,
    base::{
        configuration::{Settings, StorageKind},
        telemetry,
    },
    startup::Application,
};
use reqwest::{Response, multipart};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

pub use self::{bodies::*, ports::reserved_port, stored::*};

/// Logs only when `TEST_LOG` is set: `TEST_LOG=1 cargo test -- some_test`.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = test_settings();
        telemetry::init(&settings.log, &settings.telemetry)
            .expect("no trace export in tests")
            .shutdown();
    }
});

/// The `local` settings of `config/`, with only `APP__DATABASE__URL` taken from the environment
/// (README → Tests): whatever other `APP__…` variables the shell running the tests has set, a
/// test sees the settings it was written against.
pub fn test_settings() -> Settings {
    let vars = std::env::var("APP__DATABASE__URL")
        .map(|url| HashMap::from([("APP__DATABASE__URL".to_owned(), url)]))
        .unwrap_or_default();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_from(&config, "local", vars).expect("the settings load")
}

/// A timeout for outbound calls that no answer comes near, however busy the machine.
pub const GENEROUS_TIMEOUT_MS: u64 = 30_000;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// The storage root with the `fs` backend.
    pub storage: tempfile::TempDir,
    /// This test's part of the bucket with the `s3` backend.
    pub bucket: Option<TestBucket>,
    pub uploads_in_flight: watch::Receiver<usize>,
    db_name: String,
    maintenance_url: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let mut settings = test_settings();
    let maintenance_url = settings.database.url.expose_secret().to_owned();
    let db_name = format!("intake_test_{}", Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&maintenance_url)
        .await
        .expect("Postgres is reachable with database.url (see README → Tests)");
    conn.execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{db_name}""#)))
        .await
        .expect("create the test database");
    let mut url = reqwest::Url::parse(&maintenance_url).expect("database.url is a URL");
    url.set_path(&db_name);

    let storage = tempfile::tempdir().expect("a temporary storage root");
    settings.database.url = SecretString::from(url.to_string());
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.storage.root = storage.path().to_owned();
    if let Some(url) = test_bucket_url() {
        use_bucket(&mut settings.storage.s3, &url);
        settings.storage.kind = StorageKind::S3;
    }
    customize(&mut settings);
    let bucket =
        (settings.storage.kind == StorageKind::S3).then(|| TestBucket::new(&settings.storage.s3));
    if bucket.is_some() {
        note_bucket_test();
    }

    let app = Application::build(settings).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let uploads_in_flight = app.uploads_in_flight();
    tokio::spawn(app.run_until_stopped());
    let pool = PgPool::connect(url.as_str()).await.expect("test pool");
    TestApp {
        address,
        client: reqwest::Client::new(),
        pool,
        storage,
        bucket,
        uploads_in_flight,
        db_name,
        maintenance_url,
    }
}

/// Under the suite run again against a bucket (`s3::the_suite_passes_against_a_bucket_too`),
/// notes that the running test (libtest names its thread after it) stored into the bucket, so
/// that only such tests are counted, not those that passed without touching it.
fn note_bucket_test() {
    if let Some(dir) = std::env::var_os("INTAKE_TEST_S3_RAN") {
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        std::fs::write(Path::new(&dir).join(test), b"").expect("the note is written");
    }
}

impl Drop for TestApp {
    /// Drops the test's database. Runs on its own thread: Drop cannot await.
    fn drop(&mut self) {
        let url = self.maintenance_url.clone();
        let name = self.db_name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url).await?;
                conn.execute(AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                )))
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.db_name);
        }
    }
}

impl TestApp {
    /// `127.0.0.1:port`, for raw connections.
    pub fn host(&self) -> &str {
        self.address.trim_start_matches("http://")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn upload(&self, form: multipart::Form) -> Response {
        self.client
            .post(self.url("/upload"))
            .multipart(form)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /files`: a batch.
    pub async fn upload_batch(&self, form: multipart::Form) -> Response {
        self.client
            .post(self.url("/files"))
            .multipart(form)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn upload_file(
        &self,
        name: &str,
        bytes: Vec<u8>,
        content_type: Option<&str>,
    ) -> Response {
        self.upload(multipart::Form::new().part("file", file_part(name, bytes, content_type)))
            .await
    }

    /// `POST /upload` of one `file` part with a bearer token.
    pub async fn upload_as(&self, token: &str, part: multipart::Part) -> Response {
        self.client
            .post(self.url("/upload"))
            .bearer_auth(token)
            .multipart(multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path` with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// A new user and a valid token for it, made as `intake users create` / `tokens create` do.
    pub async fn user_with_token(&self, name: &str) -> String {
        store::create_user(&self.pool, name, None)
            .await
            .expect("user created");
        self.token_for(name, None).await
    }

    pub async fn token_for(&self, user: &str, expires_at: Option<OffsetDateTime>) -> String {
        let token = store::create_token(&self.pool, user, expires_at)
            .await
            .expect("token created");
        token.secret.expose_secret().to_owned()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Takes this test's database away from the server (refusing new connections and ending the
    /// open ones), or gives it back.
    pub async fn set_connections_allowed(&self, allowed: bool) {
        let db = self.db_name();
        let mut conn = PgConnection::connect(self.maintenance_url()).await.unwrap();
        conn.execute(AssertSqlSafe(format!(
            r#"ALTER DATABASE "{db}" ALLOW_CONNECTIONS {allowed}"#
        )))
        .await
        .unwrap();
        if !allowed {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&db)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }

    pub fn db_name(&self) -> String {
        self.db_name.clone()
    }

    pub fn maintenance_url(&self) -> &str {
        &self.maintenance_url
    }

    /// The URL of this test's own database.
    pub fn db_url(&self) -> String {
        let mut url = reqwest::Url::parse(&self.maintenance_url).unwrap();
        url.set_path(&self.db_name);
        url.to_string()
    }

    /// Another instance of the same service: the same database and storage (root, or prefix in
    /// the bucket). Its own `pool` is of an empty database: assert through this one's.
    pub async fn another_instance(&self, customize: impl FnOnce(&mut Settings)) -> TestApp {
        let (root, db) = (self.storage.path().to_owned(), self.db_url());
        let prefix = self.bucket.as_ref().map(|bucket| bucket.prefix.clone());
        spawn_app_with(|s| {
            s.storage.root = root;
            s.database.url = db.into();
            if let Some(prefix) = prefix {
                s.storage.s3.prefix = prefix;
            }
            customize(s);
        })
        .await
    }

    /// File `id`'s content has this SHA-256.
    pub async fn assert_downloads(&self, id: Uuid, sha256: &str) {
        let content = self
            .get(&format!("/files/{id}/content"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha256_hex(&content), sha256, "{id}");
    }

    /// Waits until the server has finished with every upload it started.
    pub async fn uploads_settled(&self) {
        let mut rx = self.uploads_in_flight.clone();
        rx.wait_for(|n| *n == 0).await.expect("server alive");
    }
}

/// Whether a tool the suite drives (installed by .ci/run) is there. See `may_skip`.
pub fn installed(path: &Path) -> Option<()> {
    if path.exists() {
        return Some(());
    }
    may_skip(&format!("{} is not installed; see .ci/run", path.display()));
    None
}

/// A test that cannot run here (a tool missing, no permission to mount) returns after this.
/// A skip is never silent: it fails the test unless `INTAKE_ALLOW_SKIPS=1` says that skipping
/// is wanted (and then it is printed), and under `CI` it always fails.
pub fn may_skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI runs every test: {reason}");
    }
    if std::env::var("INTAKE_ALLOW_SKIPS").as_deref() != Ok("1") {
        panic!("{reason} (INTAKE_ALLOW_SKIPS=1 skips such tests instead of failing them)");
    }
    eprintln!("skipped: {reason}");
}

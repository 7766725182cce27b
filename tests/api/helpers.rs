//! The harness: a real server on port 0 with its own Postgres database and storage root.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use futures_util::TryStreamExt;
use intake::{
    access::auth::store,
    base::{
        configuration::{S3Settings, Settings, StorageKind},
        telemetry,
    },
    startup::Application,
};
use object_store::{ObjectStore, ObjectStoreExt, path::Path as Key};
use reqwest::{Response, multipart};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

/// Logs only when `TEST_LOG` is set: `TEST_LOG=1 cargo test -- some_test`.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = Settings::load(None).expect("settings load");
        telemetry::init(&settings.log, &settings.telemetry)
            .expect("no trace export in tests")
            .shutdown();
    }
});

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
    let mut settings = Settings::load(None).expect("settings load");
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

/// A size beyond the default `storage.inline_max_bytes`: such a file goes to the storage backend
/// (smaller ones are kept in Postgres with their row).
pub const NOT_INLINE: usize = 100_000;

/// A file part as browsers and curl send it.
pub fn file_part(name: &str, bytes: Vec<u8>, content_type: Option<&str>) -> multipart::Part {
    let part = multipart::Part::bytes(bytes).file_name(name.to_owned());
    match content_type {
        Some(ct) => part.mime_str(ct).expect("valid mime"),
        None => part,
    }
}

/// A file part streamed in 64 KiB chunks: it has no length, so the request goes out chunked,
/// without Content-Length, and only the streamed bytes tell its size.
pub fn chunked_part(bytes: Vec<u8>) -> multipart::Part {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    multipart::Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .file_name("chunked.bin")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic, incompressible-looking bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
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

    pub async fn row_ids(&self) -> BTreeSet<Uuid> {
        row_ids(&self.pool).await
    }

    /// The objects stored, on either backend.
    pub async fn object_ids(&self) -> BTreeSet<Uuid> {
        match &self.bucket {
            Some(bucket) => bucket.object_ids().await,
            None => object_ids(self.storage.path()),
        }
    }

    /// Takes an object away behind the server's back.
    pub async fn remove_object(&self, id: Uuid) {
        match &self.bucket {
            Some(bucket) => bucket
                .client
                .delete(&bucket.key(id))
                .await
                .expect("deleted"),
            None => std::fs::remove_file(object_path(self.storage.path(), id)).expect("removed"),
        }
    }

    /// Object changes still under way: journal files on disk, intents in Postgres for a bucket.
    pub async fn leftovers(&self) -> Vec<String> {
        match &self.bucket {
            Some(_) => sqlx::query_scalar::<_, Uuid>("SELECT object_id FROM storage_intents")
                .fetch_all(&self.pool)
                .await
                .expect("intents")
                .iter()
                .map(Uuid::to_string)
                .collect(),
            None => journal_files(self.storage.path())
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
        }
    }

    /// The promise: every row has its object (or, inline, its bytes in Postgres), every object its
    /// row, nothing half-done remains
    /// once the server has finished with every upload (a committed upload's journal entry is
    /// removed after its answer).
    pub async fn assert_consistent(&self) -> BTreeSet<Uuid> {
        self.uploads_settled().await;
        assert_eq!(
            stored_ids(&self.pool).await,
            self.object_ids().await,
            "rows and objects differ"
        );
        assert_inline_intact(&self.pool).await;
        assert_eq!(self.leftovers().await, Vec::<String>::new(), "leftovers");
        self.row_ids().await
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

pub async fn row_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    ids(pool, "SELECT id FROM files").await
}

/// The rows whose bytes are in the storage backend (not inline in Postgres).
pub async fn stored_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    ids(pool, "SELECT id FROM files WHERE NOT inline").await
}

async fn ids(pool: &PgPool, query: &'static str) -> BTreeSet<Uuid> {
    sqlx::query_scalar::<_, Uuid>(query)
        .fetch_all(pool)
        .await
        .expect("rows")
        .into_iter()
        .collect()
}

/// Every inline row has its bytes, of its size, and no bytes are kept for any other.
pub async fn assert_inline_intact(pool: &PgPool) {
    let broken = ids(
        pool,
        "SELECT coalesce(f.id, c.file_id) FROM files f
         FULL JOIN file_contents c ON c.file_id = f.id
         WHERE f.inline IS DISTINCT FROM true OR c.file_id IS NULL
            OR length(c.bytes) <> f.size",
    )
    .await;
    let broken: BTreeSet<Uuid> = broken
        .difference(&stored_ids(pool).await)
        .copied()
        .collect();
    assert_eq!(
        broken,
        BTreeSet::new(),
        "inline rows without their bytes, or bytes without a row"
    );
}

/// Where the server keeps object `id` under `root` (see `storage`).
pub fn object_path(root: &Path, id: Uuid) -> PathBuf {
    let hex = id.simple().to_string();
    root.join("objects")
        .join(&hex[28..30])
        .join(&hex[30..32])
        .join(id.to_string())
}

pub fn object_ids(root: &Path) -> BTreeSet<Uuid> {
    files_under(&root.join("objects"))
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            Uuid::parse_str(name).expect("objects are named by id")
        })
        .collect()
}

/// Files in the journal (uploads in progress or abandoned); lock files excluded.
pub fn journal_files(root: &Path) -> Vec<PathBuf> {
    files_under(&root.join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect()
}

pub async fn assert_consistent(pool: &PgPool, root: &Path) -> BTreeSet<Uuid> {
    assert_eq!(
        stored_ids(pool).await,
        object_ids(root),
        "rows and objects differ"
    );
    assert_inline_intact(pool).await;
    let rows = row_ids(pool).await;
    assert_eq!(
        journal_files(root),
        Vec::<PathBuf>::new(),
        "journal leftovers"
    );
    rows
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

pub async fn problem(response: Response) -> serde_json::Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    response.json().await.expect("problem body")
}

/// Asserts a problem+json response with this status and code, and returns its body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let body = problem(response).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    body
}

/// `INTAKE_TEST_S3=http://KEY:SECRET@HOST:PORT/BUCKET`: the suite stores in that bucket instead
/// of on disk (`.ci/run` runs the suite both ways, against s3s-fs).
pub fn test_bucket_url() -> Option<reqwest::Url> {
    let url = std::env::var("INTAKE_TEST_S3").ok()?;
    Some(reqwest::Url::parse(&url).expect("INTAKE_TEST_S3 is a URL"))
}

/// Points `s3` at the bucket of `url`, under a prefix of its own, so that tests sharing the
/// bucket never see each other's objects.
pub fn use_bucket(s3: &mut S3Settings, url: &reqwest::Url) {
    s3.bucket = url.path().trim_matches('/').to_owned();
    s3.endpoint = format!(
        "http://{}",
        url.host_str()
            .zip(url.port())
            .map(|(h, p)| format!("{h}:{p}"))
            .expect("host and port")
    );
    s3.access_key_id = url.username().to_owned();
    s3.secret_access_key = SecretString::from(url.password().unwrap_or_default().to_owned());
    s3.path_style = true;
    // The smallest S3 allows, so that the suite's larger files go as several parts.
    s3.part_size_bytes = 5 * 1024 * 1024;
    s3.prefix = format!("test-{}/", Uuid::now_v7().simple());
}

/// A test's view of its part of the bucket, through the S3 API.
pub struct TestBucket {
    client: object_store::aws::AmazonS3,
    pub prefix: String,
}

impl TestBucket {
    pub fn new(s3: &S3Settings) -> Self {
        Self {
            client: intake::storage::s3::client(s3).expect("an S3 client for the test bucket"),
            prefix: s3.prefix.clone(),
        }
    }

    /// Where the server keeps object `id`.
    pub fn key(&self, id: Uuid) -> Key {
        intake::storage::s3::object_key(&self.prefix, id)
    }

    pub async fn object_ids(&self) -> BTreeSet<Uuid> {
        let prefix = Key::from(self.prefix.trim_end_matches('/'));
        self.client
            .list(Some(&prefix))
            .map_ok(|meta| {
                let name = meta
                    .location
                    .filename()
                    .expect("a key has a name")
                    .to_owned();
                Uuid::parse_str(&name).expect("objects are named by id")
            })
            .try_collect()
            .await
            .expect("the bucket lists")
    }
}

/// Whether a tool the suite drives (installed by .ci/run) is there. Without it a test is
/// skipped on a developer's machine, and fails under `CI`.
pub fn installed(path: &Path) -> Option<()> {
    if path.exists() {
        return Some(());
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI must have {}: see .ci/run", path.display());
    }
    eprintln!("skipped: {} is not installed; see .ci/run", path.display());
    None
}

//! Resumable uploads (tus 1.0) through our own client code (`Tus`, used across the suite):
//! every status the protocol and our access control give, and what stays in storage and
//! Postgres (`protocol`); uploads cut, stalled, killed, taken over or expired (`interrupted`);
//! partial uploads concatenated (`concat`).
//! Real tus clients: `tus_clients`.

pub mod concat;
mod interrupted;
mod protocol;

use reqwest::{Response, header::HeaderMap};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::TestApp;

pub const OCTETS: &str = "application/offset+octet-stream";

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

/// A tus client of our own: one request per call, every header visible to the test.
pub struct Tus<'a> {
    pub base: String,
    pub token: Option<&'a str>,
    /// An upload link's secret, sent as `Upload-Link` (instead of a token).
    pub link: Option<&'a str>,
    pub client: reqwest::Client,
}

impl<'a> Tus<'a> {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: None,
            link: None,
            client: reqwest::Client::new(),
        }
    }

    pub fn of(app: &TestApp) -> Self {
        Self::new(&app.address)
    }

    pub fn with_token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub fn with_link(mut self, secret: &'a str) -> Self {
        self.link = Some(secret);
        self
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Tus-Resumable", "1.0.0");
        if let Some(secret) = self.link {
            request = request.header("Upload-Link", secret);
        }
        match self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn create(&self, length: u64, filename: &str) -> Response {
        self.request(reqwest::Method::POST, "/tus/")
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata(filename))
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload whose length comes later (`Upload-Defer-Length: 1`).
    pub async fn create_deferred(&self) -> Response {
        self.request(reqwest::Method::POST, "/tus/")
            .header("Upload-Defer-Length", "1")
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload and returns its path (`/tus/{id}`).
    pub async fn created(&self, length: u64, filename: &str) -> String {
        let response = self.create(length, filename).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        header(&response, "location")
    }

    pub async fn patch(
        &self,
        path: &str,
        offset: u64,
        bytes: impl Into<reqwest::Body>,
    ) -> Response {
        self.request(reqwest::Method::PATCH, path)
            .header("Upload-Offset", offset)
            .header("Content-Type", OCTETS)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(reqwest::Method::HEAD, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn offset(&self, path: &str) -> u64 {
        let head = self.head(path).await;
        assert_eq!(head.status(), 200);
        number(head.headers(), "upload-offset")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }
}

fn metadata(filename: &str) -> String {
    use base64::Engine;
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(filename)
    )
}

pub fn id_of(path: &str) -> Uuid {
    path.trim_start_matches("/tus/").parse().unwrap()
}

async fn file_object(app: &TestApp, id: Uuid) -> Value {
    let response = app.get(&format!("/files/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Nothing of a resumable upload is left but its file, if it became one.
pub async fn assert_nothing_resumable_left(app: &TestApp) {
    app.assert_consistent().await;
    assert_eq!(count(app, "resumable_uploads").await, 0, "upload rows left");
    assert_eq!(
        count(app, "quota_reservations").await,
        0,
        "reservations left"
    );
    if app.bucket.is_none() {
        let uploads = app.storage.path().join("uploads");
        let left: Vec<_> = std::fs::read_dir(uploads).unwrap().collect();
        assert!(left.is_empty(), "upload files left: {left:?}");
    }
}

/// Waits until Postgres has seen the death of the instance that holds the upload's lease:
/// taking that instance's lock (see `intake::base::liveness`) waits for its connection to end.
pub async fn wait_until_gone(app: &TestApp, path: &str) {
    let holder: Uuid =
        sqlx::query_scalar("SELECT lease_holder FROM resumable_uploads WHERE id = $1")
            .bind(id_of(path))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let key = i64::from_be_bytes(holder.as_bytes()[8..].try_into().unwrap());
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .unwrap();
}

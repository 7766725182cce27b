//! One file's tus upload: create (or find the remembered one), then PATCH chunk after chunk,
//! asking the server where it stands after any failure.

use std::{
    io,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    UploadArgs, backoff,
    body::{chunk, local_read, sha256_of},
    progress::Progress,
    resume,
};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no folder for the resume state: pass --state, or set XDG_STATE_HOME or HOME")]
    NoStateDir,
    #[error("cannot read {}", .0.display())]
    File(PathBuf, #[source] io::Error),
    #[error("{} is not a regular file (a folder, a device, a pipe…): nothing was sent", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot keep the resume state in {}", .0.display())]
    State(PathBuf, #[source] io::Error),
    #[error("the server refused {}: {status} {detail}", .file.display())]
    Refused {
        file: PathBuf,
        status: u16,
        detail: String,
    },
    #[error("gave up on {} after {} in a row (run again to resume)", .file.display(), failed_attempts(*.attempts))]
    GaveUp {
        file: PathBuf,
        attempts: u32,
        #[source]
        last: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the server stored {} with SHA-256 {server}, but the file's is {local}", .file.display())]
    Mismatch {
        file: PathBuf,
        server: String,
        local: String,
    },
    #[error("could not set up the HTTP client")]
    Http(#[from] reqwest::Error),
}

/// What went wrong with one request: worth another try, or final.
enum Failure {
    Retry(Box<dyn std::error::Error + Send + Sync>),
    Fatal(UploadError),
}

impl From<reqwest::Error> for Failure {
    fn from(error: reqwest::Error) -> Self {
        Self::Retry(error.into())
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
    expires_in: Option<String>,
    chunk_size: u64,
    retries: u32,
}

/// Where one file's upload stands, as far as this run knows.
struct Upload<'a> {
    file: &'a Path,
    length: u64,
    state: &'a Path,
    key: String,
    /// `/tus/{id}` once created (or remembered).
    path: Option<String>,
    /// The server's offset, when the last answer gave it.
    offset: Option<u64>,
    resumed: bool,
    bar: Progress,
}

impl Client {
    pub fn new(args: &UploadArgs) -> Result<Self, UploadError> {
        Ok(Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            expires_in: args.expires_in.clone(),
            chunk_size: args.chunk_size.max(1),
            retries: args.retries,
        })
    }

    /// Uploads `file`; returns the file object the server stored.
    pub async fn upload(&self, file: &Path, state: &Path) -> Result<Value, UploadError> {
        let unreadable = |e| UploadError::File(file.to_owned(), e);
        let key = resume::key(file).map_err(unreadable)?;
        let length = std::fs::metadata(file).map_err(unreadable)?.len();
        let hashing = tokio::task::spawn_blocking({
            let file = file.to_owned();
            move || sha256_of(&file)
        });
        let mut upload = Upload {
            file,
            length,
            state,
            path: resume::find(state, &key).map_err(|e| UploadError::State(state.into(), e))?,
            key,
            offset: None,
            resumed: false,
            bar: Progress::new(file, length),
        };
        let mut failures = 0;
        let location = loop {
            match self.step(&mut upload).await {
                Ok(Some(location)) => break location,
                Ok(None) => failures = 0,
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) => {
                    failures += 1;
                    if failures > self.retries {
                        return Err(UploadError::GaveUp {
                            file: file.to_owned(),
                            attempts: failures,
                            last: error,
                        });
                    }
                    upload.bar.say(format!(
                        "{}: {error}; retrying in {:?}",
                        file.display(),
                        backoff(failures)
                    ));
                    upload.offset = None;
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        };
        let stored = self.stored(&location, file).await?;
        upload
            .bar
            .finish(stored["size"].as_u64().unwrap_or_default());
        upload.remember(None)?;
        let local = hashing
            .await
            .map_err(io::Error::other)
            .and_then(|hashed| hashed)
            .map_err(unreadable)?;
        let server = stored["sha256"].as_str().unwrap_or_default().to_owned();
        if server != local {
            return Err(UploadError::Mismatch {
                file: file.to_owned(),
                server,
                local,
            });
        }
        Ok(stored)
    }

    /// One request's worth of progress; `Some(location)` once the upload is a file.
    async fn step(&self, upload: &mut Upload<'_>) -> Result<Option<String>, Failure> {
        let Some(path) = upload.path.clone() else {
            self.create(upload).await?;
            return Ok(None);
        };
        let offset = match upload.offset {
            Some(offset) => offset,
            None => {
                let head = self.request(Method::HEAD, &path).send().await?;
                if matches!(head.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
                    upload.bar.say(format!(
                        "{}: the server no longer has its upload; starting over",
                        upload.file.display()
                    ));
                    upload.path = None;
                    upload.remember(None)?;
                    return Ok(None);
                }
                let head = upload.accepted(head).await?;
                if let Some(location) = text(&head, header::CONTENT_LOCATION) {
                    return Ok(Some(location));
                }
                let offset = number(&head, "upload-offset")?;
                if offset > 0 && !upload.resumed {
                    upload.bar.say(format!(
                        "{}: resuming at byte {offset} of {}",
                        upload.file.display(),
                        upload.length
                    ));
                }
                offset
            }
        };
        upload.resumed = true;
        upload.bar.set_position(offset);
        let size = self.chunk_size.min(upload.length - offset);
        let body = chunk(upload.file, offset, size, upload.bar.clone())
            .await
            .map_err(|e| Failure::Fatal(UploadError::File(upload.file.to_owned(), e)))?;
        let patched = self
            .request(Method::PATCH, &path)
            .header("Upload-Offset", offset)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await;
        let patched = match patched {
            Ok(response) if response.status() == StatusCode::CONFLICT => {
                upload.offset = None;
                return Ok(None);
            }
            Ok(response) => upload.accepted(response).await?,
            // The file could not be read: no retry makes it readable.
            Err(error) => match local_read(&error) {
                Some(read) => {
                    let error = io::Error::new(read.kind(), read.to_string());
                    return Err(Failure::Fatal(UploadError::File(
                        upload.file.to_owned(),
                        error,
                    )));
                }
                None => return Err(error.into()),
            },
        };
        upload.offset = Some(number(&patched, "upload-offset")?);
        Ok(text(&patched, header::CONTENT_LOCATION))
    }

    async fn create(&self, upload: &mut Upload<'_>) -> Result<(), Failure> {
        let name = upload
            .file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut metadata = format!("filename {}", STANDARD.encode(name));
        if let Some(lifetime) = &self.expires_in {
            metadata.push_str(&format!(",expires_in {}", STANDARD.encode(lifetime)));
        }
        let created = self
            .request(Method::POST, "/tus/")
            .header("Upload-Length", upload.length)
            .header("Upload-Metadata", metadata)
            .send()
            .await?;
        let created = upload.accepted(created).await?;
        let location = text(&created, header::LOCATION)
            .ok_or_else(|| Failure::Retry("the creation's answer has no Location".into()))?;
        // Only the path: the next run may reach the upload through another instance.
        let path = match location.find("/tus/") {
            Some(start) => location[start..].to_owned(),
            None => location,
        };
        upload.remember(Some(&path))?;
        upload.path = Some(path);
        upload.offset = Some(0);
        Ok(())
    }

    /// The file object at `location` (`/files/{id}`).
    async fn stored(&self, location: &str, file: &Path) -> Result<Value, UploadError> {
        let mut failures = 0;
        loop {
            let fetched = async {
                let response = self.request(Method::GET, location).send().await?;
                let response = accepted(response, file).await?;
                Ok::<_, Failure>(response.json::<Value>().await?)
            }
            .await;
            match fetched {
                Ok(stored) => return Ok(stored),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) if failures >= self.retries => {
                    return Err(UploadError::GaveUp {
                        file: file.to_owned(),
                        attempts: failures + 1,
                        last: error,
                    });
                }
                Err(Failure::Retry(_)) => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Tus-Resumable", "1.0.0");
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }
}

impl Upload<'_> {
    fn remember(&self, path: Option<&str>) -> Result<(), UploadError> {
        resume::remember(self.state, &self.key, path)
            .map_err(|e| UploadError::State(self.state.to_owned(), e))
    }

    async fn accepted(&self, response: Response) -> Result<Response, Failure> {
        accepted(response, self.file).await
    }
}

impl From<UploadError> for Failure {
    fn from(error: UploadError) -> Self {
        Self::Fatal(error)
    }
}

/// A success, or what the failure means: busy, rate-limited, timed out and server errors are
/// worth retrying; other refusals are final.
async fn accepted(response: Response, file: &Path) -> Result<Response, Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let detail = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let retry = status.is_server_error()
        || matches!(
            status,
            StatusCode::LOCKED | StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
        );
    if retry {
        return Err(Failure::Retry(format!("{status} {detail}").into()));
    }
    Err(Failure::Fatal(UploadError::Refused {
        file: file.to_owned(),
        status: status.as_u16(),
        detail,
    }))
}

fn text(response: &Response, name: impl header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn number(response: &Response, name: &str) -> Result<u64, Failure> {
    text(response, name)
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| Failure::Retry(format!("the answer has no valid {name}").into()))
}

fn failed_attempts(attempts: u32) -> String {
    match attempts {
        1 => "1 failed attempt".to_owned(),
        n => format!("{n} failed attempts"),
    }
}

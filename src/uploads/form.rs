//! Reads a multipart form part by part with every limit applied as the bytes arrive.

use std::{cell::Cell, future::Future, rc::Rc, time::Duration};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{HttpRequest, error::PayloadError, http::header, web};
use bytes::Bytes;
use futures_util::StreamExt;
use uuid::Uuid;

use super::content_type::{AllowList, Detector};
use crate::{
    configuration::UploadSettings,
    error::ApiError,
    files::record::NewFile,
    quota::Reservation,
    storage::{JournalEntry, Storage},
};

pub struct Limits {
    pub settings: UploadSettings,
    pub allow: AllowList,
}

impl Limits {
    pub fn new(settings: UploadSettings) -> Self {
        let allow = AllowList::new(&settings.allowed_content_types);
        Self { settings, allow }
    }
}

pub struct Form<'a> {
    multipart: Multipart,
    limits: &'a Limits,
    parts: usize,
    /// Set when the body crossed `max_request_bytes`; the multipart parser reports the same
    /// `Overflow` when a part's headers outgrow its buffer.
    over_limit: Rc<Cell<bool>>,
    declared: Option<u64>,
}

/// A file part on disk at its final path, waiting for its row.
pub struct ReceivedFile {
    pub file: NewFile,
    pub entry: JournalEntry,
}

impl<'a> Form<'a> {
    pub fn new(
        req: &HttpRequest,
        payload: web::Payload,
        limits: &'a Limits,
    ) -> Result<Self, ApiError> {
        let max = limits.settings.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max) {
            return Err(ApiError::RequestTooLarge(max));
        }
        let mut seen = 0u64;
        let over_limit = Rc::new(Cell::new(false));
        let flag = Rc::clone(&over_limit);
        let counted = payload.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > max {
                flag.set(true);
                Err(PayloadError::Overflow)
            } else {
                Ok(chunk)
            }
        });
        Ok(Self {
            multipart: Multipart::new(req.headers(), counted),
            limits,
            parts: 0,
            over_limit,
            declared,
        })
    }

    /// The body's Content-Length, when the client sent one.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// The next part, or `None` after the closing boundary. Every part counts toward
    /// `upload.max_files`.
    pub async fn next_part(&mut self) -> Result<Option<Field>, ApiError> {
        let idle = self.limits.settings.idle_timeout();
        let part = bounded(idle, self.multipart.next()).await?;
        let Some(part) = part else { return Ok(None) };
        let part = part.map_err(|e| self.error(e))?;
        self.parts += 1;
        if self.parts > self.limits.settings.max_files {
            return Err(ApiError::TooManyFiles(format!(
                "a request may carry at most {} parts",
                self.limits.settings.max_files
            )));
        }
        Ok(Some(part))
    }

    async fn next_chunk(&self, field: &mut Field) -> Result<Option<Bytes>, ApiError> {
        match bounded(self.limits.settings.idle_timeout(), field.next()).await? {
            Some(chunk) => chunk.map(Some).map_err(|e| self.error(e)),
            None => Ok(None),
        }
    }

    /// Reads and discards a part that is not a file (a plain form field).
    pub async fn skip(&self, field: &mut Field) -> Result<(), ApiError> {
        while self.next_chunk(field).await?.is_some() {}
        Ok(())
    }

    /// Streams a file part to storage, hashing and counting it, and checking its size and type
    /// on the way.
    pub async fn receive(
        &self,
        field: &mut Field,
        storage: &Storage,
        reservation: &mut Reservation,
    ) -> Result<ReceivedFile, ApiError> {
        let filename = super::filename::from_disposition(field.content_disposition());
        let mut detector = Detector::new(field.content_type(), &self.limits.allow)?;
        let max = self.limits.settings.max_file_bytes;
        let id = Uuid::now_v7();
        let mut writer = storage.create(id).await?;
        tracing::debug!(%id, %filename, "receiving file");
        let mut size = 0u64;
        let mut checked = detector.is_ready();
        while let Some(chunk) = self.next_chunk(field).await? {
            size += chunk.len() as u64;
            if size > max {
                return Err(ApiError::FileTooLarge(max));
            }
            reservation.add(chunk.len() as u64).await?;
            detector.observe(&chunk);
            if !checked && detector.is_ready() {
                self.limits.allow.check(&detector.content_type())?;
                checked = true;
            }
            writer.write(chunk).await?;
        }
        let content_type = detector.content_type();
        self.limits.allow.check(&content_type)?;
        let (written, entry) = writer.finish().await?;
        if written.size != size {
            return Err(ApiError::internal(format!(
                "received {size} bytes but stored {}",
                written.size
            )));
        }
        Ok(ReceivedFile {
            file: NewFile {
                id,
                filename,
                content_type,
                size: size as i64,
                sha256: written.sha256,
            },
            entry,
        })
    }

    fn error(&self, error: MultipartError) -> ApiError {
        match error {
            MultipartError::ContentTypeMissing
            | MultipartError::ContentTypeParse
            | MultipartError::ContentTypeIncompatible => ApiError::NotMultipart(error.to_string()),
            MultipartError::Payload(PayloadError::Overflow) if self.over_limit.get() => {
                ApiError::RequestTooLarge(self.limits.settings.max_request_bytes)
            }
            other => ApiError::MalformedMultipart(other.to_string()),
        }
    }
}

/// Waits for the body's next piece for at most `idle`.
async fn bounded<T>(idle: Duration, next: impl Future<Output = T>) -> Result<T, ApiError> {
    tokio::time::timeout(idle, next)
        .await
        .map_err(|_| ApiError::UploadTimeout(idle.as_secs()))
}

/// A part is a file when its Content-Disposition names a file.
pub fn is_file(field: &Field) -> bool {
    field
        .content_disposition()
        .is_some_and(|cd| cd.get_filename().is_some() || cd.get_filename_ext().is_some())
}

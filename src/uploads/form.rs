//! Reads a multipart form part by part with every limit applied as the bytes arrive.

use std::{cell::Cell, future::Future, mem, pin::pin, rc::Rc};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{HttpRequest, error::PayloadError, http::header, web};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    content_type::{AllowList, Detector},
    pace::Pace,
};
use crate::{
    configuration::UploadSettings,
    error::ApiError,
    files::record::NewFile,
    in_flight,
    quota::Reservation,
    storage::{ObjectWriter, Pending, Storage},
};

/// Bytes gathered before they are reserved against the quota and handed to the writer: large
/// enough that a fast upload costs few thread hops and round trips, small enough that a
/// thousand slow ones fit in memory.
const BATCH_BYTES: usize = 256 * 1024;

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
    clock: Clock<'a>,
}

/// Bounds every wait for the body: the idle timeout and the minimum rate.
struct Clock<'a> {
    settings: &'a UploadSettings,
    /// Body bytes read so far, framing included.
    received: Rc<Cell<u64>>,
    pace: Cell<Pace>,
}

/// A file part on disk at its final path, waiting for its row.
pub struct ReceivedFile {
    pub file: NewFile,
    pub entry: Pending,
}

impl<'a> Form<'a> {
    pub fn new(
        req: &HttpRequest,
        payload: web::Payload,
        limits: &'a Limits,
    ) -> Result<Self, ApiError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime::Mime>().ok())
            .is_some_and(|m| m.essence_str() == mime::MULTIPART_FORM_DATA.essence_str());
        if !is_form {
            return Err(ApiError::NotMultipart(
                "the Content-Type must be multipart/form-data with a boundary".into(),
            ));
        }
        let max = limits.settings.max_request_bytes;
        let declared = crate::http::declared_length(req.headers());
        if declared.is_some_and(|length| length > max) {
            return Err(ApiError::RequestTooLarge(max));
        }
        let over_limit = Rc::new(Cell::new(false));
        let received = Rc::new(Cell::new(0u64));
        let (flag, seen) = (Rc::clone(&over_limit), Rc::clone(&received));
        let counted = payload.map(move |chunk| {
            let chunk = chunk?;
            seen.set(seen.get() + chunk.len() as u64);
            if seen.get() > max {
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
            clock: Clock {
                settings: &limits.settings,
                received,
                pace: Cell::new(Pace::new(&limits.settings)),
            },
        })
    }

    /// The body's Content-Length, when the client sent one.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// The next part, or `None` after the closing boundary. Every part counts toward
    /// `upload.max_files`.
    pub async fn next_part(&mut self) -> Result<Option<Field>, ApiError> {
        let part = self.clock.bounded(self.multipart.next()).await?;
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
        match self.clock.bounded(field.next()).await? {
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
    /// on the way. `in_flight` counts the upload until whatever it leaves behind is removed.
    pub async fn receive(
        &self,
        field: &mut Field,
        storage: &Storage,
        reservation: &mut Reservation,
        in_flight: &in_flight::Shared,
    ) -> Result<ReceivedFile, ApiError> {
        let filename = super::filename::from_disposition(field.content_disposition());
        let declared = super::digest::declared_sha256(field.headers())?;
        let mut detector = Detector::new(field.content_type(), &self.limits.allow)?;
        let max = self.limits.settings.max_file_bytes;
        let id = Uuid::now_v7();
        let mut writer = storage.create(id, std::sync::Arc::clone(in_flight));
        tracing::debug!(%id, %filename, "receiving file");
        let mut size = 0u64;
        let mut checked = detector.is_ready();
        let mut batch = Batch::default();
        while let Some(chunk) = self.next_chunk(field).await? {
            size += chunk.len() as u64;
            if size > max {
                return Err(ApiError::FileTooLarge(max));
            }
            detector.observe(&chunk);
            if !checked && detector.is_ready() {
                self.limits.allow.check(&detector.content_type())?;
                checked = true;
            }
            batch.push(chunk);
            if batch.bytes >= BATCH_BYTES {
                batch.store(&mut writer, reservation).await?;
            }
        }
        reservation.add(batch.bytes as u64).await?;
        let content_type = detector.content_type();
        self.limits.allow.check(&content_type)?;
        let (written, entry) = writer.finish(batch.chunks).await?;
        if written.size != size {
            return Err(ApiError::internal(format!(
                "received {size} bytes but stored {}",
                written.size
            )));
        }
        // Dropping `entry` removes the object again.
        if declared.is_some_and(|declared| declared != written.sha256) {
            return Err(ApiError::ChecksumMismatch(filename));
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

impl Clock<'_> {
    /// Waits for the body's next piece: at most `idle_timeout_secs`, and only while the body
    /// keeps up the minimum rate.
    async fn bounded<T>(&self, next: impl Future<Output = T>) -> Result<T, ApiError> {
        let settings = self.settings;
        let idle = settings.idle_timeout();
        let started = Instant::now();
        let mut next = pin!(next);
        loop {
            let idle_left = idle.saturating_sub(started.elapsed());
            let mut pace = self.pace.get();
            let limit = pace.until_check().map_or(idle_left, |c| c.min(idle_left));
            let waiting = Instant::now();
            let outcome = tokio::time::timeout(limit, &mut next).await;
            let judged = pace.record(waiting.elapsed(), self.received.get());
            self.pace.set(pace);
            judged.map_err(|_| ApiError::UploadTooSlow {
                min_bytes_per_sec: settings.min_bytes_per_sec,
                window_secs: settings.min_rate_window_secs,
            })?;
            match outcome {
                Ok(item) => return Ok(item),
                Err(_) if started.elapsed() >= idle => {
                    return Err(ApiError::UploadTimeout(idle.as_secs()));
                }
                Err(_) => {}
            }
        }
    }
}

/// Chunks received but not yet stored.
#[derive(Default)]
struct Batch {
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push(chunk);
    }

    /// Reserves the batch's bytes against the quota, then hands them to the writer.
    async fn store(
        &mut self,
        writer: &mut ObjectWriter,
        reservation: &mut Reservation,
    ) -> Result<(), ApiError> {
        reservation.add(mem::take(&mut self.bytes) as u64).await?;
        writer.write(mem::take(&mut self.chunks)).await?;
        Ok(())
    }
}

/// A part is a file when its Content-Disposition names a file.
pub fn is_file(field: &Field) -> bool {
    field
        .content_disposition()
        .is_some_and(|cd| cd.get_filename().is_some() || cd.get_filename_ext().is_some())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(idle_secs: u64, min_bytes_per_sec: u64) -> UploadSettings {
        UploadSettings {
            max_file_bytes: 1 << 30,
            max_files: 10,
            max_request_bytes: 1 << 31,
            idle_timeout_secs: idle_secs,
            min_bytes_per_sec,
            min_rate_window_secs: 10,
            min_rate_grace_secs: 5,
            allowed_content_types: Vec::new(),
        }
    }

    fn clock(settings: &UploadSettings) -> Clock<'_> {
        Clock {
            settings,
            received: Rc::default(),
            pace: Cell::new(Pace::new(settings)),
        }
    }

    /// Virtual time only moves when every task waits on a timer: the elapsed times are exact.
    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_when_its_first_window_closes_short() {
        let settings = settings(60, 1000);
        let clock = clock(&settings);
        let started = Instant::now();

        let waited = clock.bounded(std::future::pending::<()>()).await;

        assert!(matches!(waited, Err(ApiError::UploadTooSlow { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(15), "grace + window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_times_out_at_the_idle_timeout() {
        let settings = settings(3, 1000);
        let clock = clock(&settings);
        let started = Instant::now();

        let waited = clock.bounded(std::future::pending::<()>()).await;

        assert!(matches!(waited, Err(ApiError::UploadTimeout(3))));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_waited_for_as_long_as_it_lasts() {
        let settings = settings(60, 1000);
        let clock = clock(&settings);
        for _ in 0..120 {
            let received = Rc::clone(&clock.received);
            let next = async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                received.set(received.get() + 1000);
            };
            assert!(clock.bounded(next).await.is_ok());
        }
    }
}

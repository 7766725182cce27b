//! Reads a multipart form part by part with every limit applied as the bytes arrive.

use std::{cell::Cell, rc::Rc, sync::Arc};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{HttpRequest, error::PayloadError, http::header, web};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    access::quota::Reservation,
    base::{error::ApiError, in_flight},
    catalog::{
        record::{NewFile, Origin},
        upload_links::UploadLink,
    },
    events::hook::{Hook, Proposal},
    ingest::{
        Limits,
        clock::Clock,
        content_type::{AllowList, Detector},
        incoming::{Incoming, Limit},
        upload_link,
    },
    storage::{Pending, Storage},
};

pub struct Form<'a> {
    multipart: Multipart,
    limits: &'a Limits,
    /// The server's types, narrowed by the upload link's when the files come through one.
    allow: AllowList,
    /// The largest file: the server's bound, or the upload link's if smaller.
    max_file_bytes: u64,
    link: Option<Uuid>,
    files: usize,
    /// Set when the body crossed `max_request_bytes`; the multipart parser reports the same
    /// `Overflow` when a part's headers outgrow its buffer.
    over_limit: Rc<Cell<bool>>,
    declared: Option<u64>,
    clock: Clock<'a>,
}

/// A file part waiting for its row: durable in the backend at its final place (`entry` guards
/// it), or held in memory to be written with the row (`file.inline`).
pub struct ReceivedFile {
    pub file: NewFile,
    pub entry: Option<Pending>,
}

impl<'a> Form<'a> {
    pub fn new(
        req: &HttpRequest,
        payload: web::Payload,
        limits: &'a Limits,
        link: Option<&UploadLink>,
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
        let declared = crate::api::declared_length(req.headers());
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
            allow: upload_link::allow(limits, link),
            max_file_bytes: upload_link::max_file_bytes(limits, link),
            link: link.map(|link| link.id),
            files: 0,
            over_limit,
            declared,
            clock: Clock::new(&limits.settings, received),
        })
    }

    /// The body's Content-Length, when the client sent one.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// The next part, or `None` after the closing boundary.
    pub async fn next_part(&mut self) -> Result<Option<Field>, ApiError> {
        let part = self.clock.bounded(self.multipart.next()).await?;
        let Some(part) = part else { return Ok(None) };
        Ok(Some(part.map_err(|e| self.error(e))?))
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

    /// A plain form field's value, of at most `max` bytes of UTF-8, or `None` if it is not.
    pub async fn text(&self, field: &mut Field, max: usize) -> Result<Option<String>, ApiError> {
        let mut value = Vec::new();
        while let Some(chunk) = self.next_chunk(field).await? {
            if value.len() + chunk.len() > max {
                self.skip(field).await?;
                return Ok(None);
            }
            value.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8(value).ok())
    }

    /// Asks the upload hook, if there is one, whether file part `field` of `owner`'s may be
    /// stored, before a byte of it is; the metadata the hook attaches to it.
    pub async fn admit(
        &self,
        field: &Field,
        hook: Option<&Hook>,
        owner: i64,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let Some(hook) = hook else { return Ok(None) };
        let filename = crate::ingest::filename::from_disposition(field.content_disposition());
        let content_type = field.content_type().map(ToString::to_string);
        hook.admit(Proposal {
            user_id: owner,
            user: None,
            upload_link: self.link,
            protocol: "multipart",
            filename: &filename,
            content_type: content_type.as_deref(),
            size: None,
            metadata: serde_json::Map::new(),
        })
        .await
    }

    /// Streams a file part to storage, hashing and counting it, and checking its size and type
    /// on the way. `in_flight` counts the upload until whatever it leaves behind is removed.
    #[tracing::instrument(name = "upload.receive", skip_all, fields(file_id, size))]
    pub async fn receive(
        &mut self,
        field: &mut Field,
        storage: &Storage,
        reservation: &mut Reservation,
        in_flight: &in_flight::Shared,
    ) -> Result<ReceivedFile, ApiError> {
        // Files count toward `upload.max_files`; other fields are only read past.
        self.files += 1;
        if self.files > self.limits.settings.max_files {
            return Err(ApiError::TooManyFiles(format!(
                "a request may carry at most {} files",
                self.limits.settings.max_files
            )));
        }
        let filename = crate::ingest::filename::from_disposition(field.content_disposition());
        let declared = super::digest::declared_sha256(field.headers())?;
        let detector = Detector::new(field.content_type(), &self.allow)?;
        let limit = Limit::MaxFile(self.max_file_bytes);
        let mut incoming = Incoming::new(0, limit, Some(detector), &self.allow);
        let id = Uuid::now_v7();
        let span = tracing::Span::current();
        span.record("file_id", tracing::field::display(id));
        // Created with the first full batch, or at the end for a file too large to be inline.
        let mut writer = None;
        tracing::debug!(%id, %filename, "receiving file");
        while let Some(chunk) = self.next_chunk(field).await? {
            if let Some(full) = incoming.push(chunk)? {
                let writer =
                    writer.get_or_insert_with(|| storage.create(id, Arc::clone(in_flight)));
                reservation.add(full.bytes).await?;
                writer.write(full.chunks).await?;
            }
        }
        let size = incoming.size();
        span.record("size", size);
        // Checked once the last bytes are reserved: a file over the quota is told so first.
        let content_type = incoming.content_type();
        let batch = incoming.into_last();
        reservation.add(batch.bytes).await?;
        let content_type = content_type?.expect("a file part has a detector");
        let (sha256, inline, entry) = match writer {
            None if size <= self.limits.inline_max => {
                // At most `inline_max` bytes: hashing them costs less than a trip to a thread.
                let bytes = batch.chunks.concat();
                (Sha256::digest(&bytes).into(), Some(bytes), None)
            }
            writer => {
                let writer = writer.unwrap_or_else(|| storage.create(id, Arc::clone(in_flight)));
                let (written, entry) = writer.finish(batch.chunks).await?;
                if written.size != size {
                    return Err(ApiError::internal(format!(
                        "received {size} bytes but stored {}",
                        written.size
                    )));
                }
                // Dropping `entry` removes the object again.
                (written.sha256, None, Some(entry))
            }
        };
        if declared.is_some_and(|declared| declared != sha256) {
            return Err(ApiError::ChecksumMismatch(filename));
        }
        Ok(ReceivedFile {
            file: NewFile {
                id,
                filename,
                content_type,
                size: size as i64,
                sha256,
                inline,
                // The form's `expires_in`, once the whole form is read.
                lifetime: None,
                upload_link: self.link,
                // The hook's, once it has said yes.
                metadata: None,
                origin: Origin::here("multipart"),
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

/// A part is a file when its Content-Disposition names a file.
pub fn is_file(field: &Field) -> bool {
    field
        .content_disposition()
        .is_some_and(|cd| cd.get_filename().is_some() || cd.get_filename_ext().is_some())
}

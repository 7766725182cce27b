//! One PATCH (or a creation's data): the body streamed to storage under the upload's lease,
//! then recorded; the last one makes the upload a file.

use std::{cell::Cell, rc::Rc, sync::Arc};

use actix_web::web;
use futures_util::StreamExt;
use sha2::Digest;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Resumable, checksum::Checksum, commit, holding::Holding};
use crate::{
    access::quota::Reservation,
    base::{error::ApiError, in_flight},
    catalog::record::{FileRecord, NewFile, Origin},
    ingest::{
        clock::Clock,
        content_type::Detector,
        incoming::{Batch, Incoming, Limit},
    },
    resumable::record::{self, Leased, Progress},
    storage::{
        partial::{Expected, Partial},
        resumable::Appender,
    },
};

/// What one request asks of an upload, as its protocol's headers say it.
pub struct Append {
    /// Where its bytes start: `Upload-Offset`, or 0 for a creation's.
    pub offset: u64,
    /// The upload's whole length, when this request declares it.
    pub length: Option<u64>,
    /// The body's `Content-Length`, when it has one.
    pub body: Option<u64>,
    pub checksum: Option<Checksum>,
    /// The client says this body is the upload's last (the IETF draft's `Upload-Complete: ?1`):
    /// once it has all arrived, the upload is whole. A tus upload is whole at its length.
    pub last: bool,
    /// `tus` or `ietf`, for the metrics.
    pub protocol: &'static str,
}

/// What a PATCH achieved.
pub struct Patched {
    pub offset: u64,
    pub expires_at: OffsetDateTime,
    /// The file the upload became, when this PATCH finished it.
    pub file: Option<FileRecord>,
}

/// Appends the request's body at `offset` and records how far the upload got; the lease is
/// given back either way.
#[tracing::instrument(name = "upload.patch", skip_all, fields(upload_id = %upload.id, offset))]
pub async fn patch(
    resumable: &Resumable,
    payload: web::Payload,
    upload: Leased,
    request: Append,
) -> Result<Patched, ApiError> {
    tracing::Span::current().record("offset", request.offset);
    let in_flight = Arc::new(resumable.ingest.in_flight.enter());
    let mut holding = Holding::new(resumable, upload);
    match append(&mut holding, payload, request, &in_flight).await {
        Ok(patched) => Ok(patched),
        Err(error) => {
            if holding.held {
                holding.give_back().await;
            }
            Err(error)
        }
    }
}

/// One PATCH, in a straight line: the limits it must keep, its body streamed to storage with
/// progress recorded on the way, then what it ended with recorded and, if the upload is whole,
/// the file made.
async fn append(
    holding: &mut Holding<'_>,
    mut payload: web::Payload,
    request: Append,
    in_flight: &in_flight::Shared,
) -> Result<Patched, ApiError> {
    let tus = holding.resumable;
    let upload = &holding.upload;
    let offset = request.offset;
    let (length, limit) = limits(upload, &request, tus.ingest.limits.settings.max_file_bytes)?;
    let mut reservation = Reservation::resume(
        &tus.ingest.quota,
        upload.id,
        upload.owner,
        upload.reserved as u64,
        offset,
    );
    if let Some(length) = length {
        reservation.reserve_total(length).await?;
    }
    // A partial upload's first bytes are the file's only in the first partial: the final
    // upload tells the type, from the concatenation's first bytes.
    let detector = match (offset, &upload.content_type, upload.partial) {
        (0, None, false) => Some(detector(upload, tus)?),
        _ => None,
    };
    let mut body = Body {
        tus,
        upload,
        length,
        reservation,
        checksum: request.checksum,
        incoming: Incoming::new(offset, limit, detector, &tus.ingest.limits.allow),
        recorded: offset,
    };
    tracing::debug!(id = %upload.id, offset, "receiving a PATCH");
    let partial = upload.partial()?;
    let expected = Expected {
        body: request.body,
        upload: length.unwrap_or(tus.ingest.limits.settings.max_file_bytes),
    };
    let appender = holding.appender.insert(
        tus.ingest
            .storage
            .append(upload.id, partial, expected)
            .await?,
    );
    let cut = body
        .stream(&mut payload, appender, &holding.superseded)
        .await?;

    let Body {
        incoming,
        checksum,
        mut reservation,
        ..
    } = body;
    let content_type = known_type(&incoming, upload, offset);
    let last = incoming.into_last();
    // A body whose checksum cannot be checked (it was cut) or does not match is not kept.
    if let Some(sum) = checksum {
        if let Some(cut) = cut {
            return Err(cut);
        }
        if !sum.update(last.chunks.clone()).await?.matches() {
            return Err(ApiError::ChunkChecksumMismatch);
        }
    }
    reservation.add(last.bytes).await?;
    let content_type = content_type?;
    let appender = holding.appender.take().expect("inserted above");
    let partial = appender.pause(last.chunks).await?;
    // The last body, whole, tells the length if nothing did before; one that falls short of
    // a declared length is kept, and refused.
    let last = request.last && cut.is_none();
    let (length, short) = match (last, length) {
        (true, None) => (Some(partial.size), None),
        (true, Some(length)) if length != partial.size => (
            Some(length),
            Some(ApiError::InconsistentLength(format!(
                "the upload's length is {length} but its last body ended at {}",
                partial.size
            ))),
        ),
        _ => (length, None),
    };
    let ends_at_length = upload.ends_at_length || (last && short.is_none());
    let complete = ends_at_length && length == Some(partial.size);
    // A whole partial upload stays an upload, for a final upload to take.
    let finishing = complete && !upload.partial;
    let content = content_type.as_deref();
    let progress = Progress {
        partial: &partial,
        length: length.map(|length| length as i64),
        content_type: content,
        ends_at_length,
        expires_at: OffsetDateTime::now_utc() + tus.settings.expiry(),
    };
    save_progress(tus, upload, &progress, !finishing).await?;
    let expires_at = progress.expires_at;
    holding.held = finishing;
    let offset = partial.size;
    if let Some(cut) = cut.filter(|_| !complete).or(short) {
        tracing::info!(id = %holding.upload.id, offset, "kept the bytes of a PATCH cut short");
        return Err(cut);
    }
    let file = match finishing {
        true => {
            let protocol = request.protocol;
            Some(finish(holding, partial, content_type, in_flight, protocol).await?)
        }
        false => None,
    };
    Ok(Patched {
        offset,
        expires_at,
        file,
    })
}
/// A PATCH's body on its way to storage, and what it must keep to.
struct Body<'a> {
    tus: &'a Resumable,
    upload: &'a Leased,
    length: Option<u64>,
    reservation: Reservation,
    /// `Upload-Checksum`, while the body streams.
    checksum: Option<Checksum>,
    incoming: Incoming<'a>,
    /// The offset last recorded.
    recorded: u64,
}

impl Body<'_> {
    /// Streams the body to `appender`, batch by batch, recording progress every
    /// `tus.checkpoint_bytes`. A body cut short (the client went, stalled, or a newer request
    /// took the upload over) ends the stream with the reason, its bytes so far kept.
    async fn stream(
        &mut self,
        payload: &mut web::Payload,
        appender: &mut Appender,
        superseded: &CancellationToken,
    ) -> Result<Option<ApiError>, ApiError> {
        let counted = Rc::new(Cell::new(0u64));
        let clock = Clock::new(&self.tus.ingest.limits.settings, Rc::clone(&counted));
        loop {
            let next = tokio::select! {
                next = clock.bounded(payload.next()) => next,
                () = superseded.cancelled() => {
                    tracing::info!(id = %self.upload.id, "a newer request took this upload over");
                    return Ok(Some(ApiError::UploadLocked));
                }
            };
            let chunk = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => {
                    let ended = format!("the body ended early: {error}");
                    return Ok(Some(ApiError::InvalidRequest(ended)));
                }
                Err(error) => return Ok(Some(error)),
            };
            counted.set(counted.get() + chunk.len() as u64);
            if let Some(full) = self.incoming.push(chunk)? {
                self.store(full, appender).await?;
            }
        }
    }

    async fn store(&mut self, full: Batch, appender: &mut Appender) -> Result<(), ApiError> {
        self.reservation.add(full.bytes).await?;
        if let Some(sum) = self.checksum.take() {
            self.checksum = Some(sum.update(full.chunks.clone()).await?);
        }
        appender.write(full.chunks).await?;
        // A checked chunk is kept whole or not at all: no progress before its end. Nor is the
        // last byte recorded before the body has ended: a body that goes on past the length is
        // refused, and must not leave a whole upload behind.
        let size = self.incoming.size();
        let due = size - self.recorded >= self.tus.settings.checkpoint_bytes;
        if self.checksum.is_none() && due && self.length != Some(size) {
            let partial = appender.checkpoint().await?;
            let content_type = known_type(&self.incoming, self.upload, 0)?;
            let progress = Progress {
                partial: &partial,
                length: self.length.map(|length| length as i64),
                content_type: content_type.as_deref(),
                ends_at_length: self.upload.ends_at_length,
                expires_at: OffsetDateTime::now_utc() + self.tus.settings.expiry(),
            };
            let upload = self.upload;
            save_progress(self.tus, upload, &progress, false).await?;
            tracing::debug!(id = %upload.id, offset = partial.size, "progress recorded");
            self.recorded = partial.size;
        }
        Ok(())
    }
}

/// The content type as far as it is known: what the first bytes tell (checked against the
/// allow-list) when this PATCH brought them and more than `offset`; else what was recorded.
fn known_type(
    incoming: &Incoming,
    upload: &Leased,
    offset: u64,
) -> Result<Option<String>, ApiError> {
    if incoming.size() <= offset {
        return Ok(upload.content_type.clone());
    }
    Ok(incoming
        .content_type()?
        .or_else(|| upload.content_type.clone()))
}

/// The upload's length once this request's `Upload-Length` (deferred length) is applied, and
/// where its bytes must stop; a body announced beyond that is refused before it is read.
fn limits(
    upload: &Leased,
    request: &Append,
    max_file_bytes: u64,
) -> Result<(Option<u64>, Limit), ApiError> {
    let offset = request.offset;
    if offset != upload.received as u64 {
        return Err(ApiError::OffsetMismatch {
            sent: offset,
            expected: upload.received as u64,
        });
    }
    let declared = whole_length(request.length, request.last, request.body, offset)?;
    let length = settle_length(upload, declared, max_file_bytes)?;
    let limit = match length {
        Some(length) => Limit::Length(length),
        None => Limit::MaxFile(max_file_bytes),
    };
    let bound = length.unwrap_or(max_file_bytes);
    if request.body.is_some_and(|body| offset + body > bound) {
        return Err(limit.exceeded());
    }
    Ok((length, limit))
}

/// Records the upload's progress (and its renewed expiry); `release` gives the lease back.
async fn save_progress(
    resumable: &Resumable,
    upload: &Leased,
    progress: &Progress<'_>,
    release: bool,
) -> Result<(), ApiError> {
    if !record::save(&resumable.ingest.pool, upload, progress, release).await? {
        return Err(ApiError::UploadLocked);
    }
    Ok(())
}

/// The upload's length as one request tells it: `declared` (`Upload-Length`), or, when its body
/// is the last, where that body ends. Two that differ are refused.
pub fn whole_length(
    declared: Option<u64>,
    last: bool,
    body: Option<u64>,
    offset: u64,
) -> Result<Option<u64>, ApiError> {
    let ends = body.filter(|_| last).map(|body| offset + body);
    match (declared, ends) {
        (Some(declared), Some(ends)) if declared != ends => Err(ApiError::InconsistentLength(
            format!("`Upload-Length` is {declared} but this last body ends at {ends}"),
        )),
        (declared, ends) => Ok(declared.or(ends)),
    }
}

/// The upload's length once the length this request declares (if any) is applied.
fn settle_length(
    upload: &Leased,
    declared: Option<u64>,
    max_file_bytes: u64,
) -> Result<Option<u64>, ApiError> {
    let known = upload.length.map(|length| length as u64);
    let Some(declared) = declared else {
        return Ok(known);
    };
    match known {
        Some(known) if known != declared => Err(ApiError::InconsistentLength(format!(
            "the upload's length is {known} already; it cannot change"
        ))),
        Some(_) => Ok(known),
        None if declared < upload.received as u64 => Err(ApiError::InconsistentLength(format!(
            "the upload has {} bytes already, more than the Upload-Length {declared}",
            upload.received
        ))),
        None if declared > max_file_bytes => Err(ApiError::FileTooLarge(max_file_bytes)),
        None => Ok(Some(declared)),
    }
}

/// The content type from the client's `filetype`, refined by the first bytes.
fn detector(upload: &Leased, tus: &Resumable) -> Result<Detector, ApiError> {
    let declared = upload
        .declared_type
        .as_deref()
        .and_then(|declared| declared.parse::<mime::Mime>().ok());
    Detector::new(declared.as_ref(), &tus.ingest.limits.allow)
}

/// Makes the whole upload a file: its object at its final place, then in one transaction its
/// row in `files` and the upload's row gone. Until that commits, the upload stays resumable
/// (a failure here is retried by the next PATCH or HEAD).
pub async fn finish(
    holding: &mut Holding<'_>,
    partial: Partial,
    content_type: Option<String>,
    in_flight: &in_flight::Shared,
    protocol: &'static str,
) -> Result<FileRecord, ApiError> {
    let tus = holding.resumable;
    let upload = &holding.upload;
    let content_type = match content_type {
        Some(content_type) => content_type,
        None => detector(upload, tus)?.content_type(),
    };
    let file = NewFile {
        id: upload.id,
        filename: upload.filename.clone(),
        content_type,
        size: partial.size as i64,
        sha256: partial.hasher.clone().finalize().into(),
        inline: None,
        lifetime: upload.lifetime,
        upload_link: upload.upload_link,
        metadata: upload.file_metadata.clone(),
        origin: Origin::here(protocol),
    };
    let pending = tus
        .ingest
        .storage
        .complete_resumable(upload.id, partial, Arc::clone(in_flight))
        .await?;
    let (id, owner) = (upload.id, upload.owner);
    let uploads = vec![(id, upload.lease)];
    let stored = commit::commit_file(tus, owner, file, uploads, pending).await?;
    holding.held = false;
    tracing::info!(%id, size = stored.size, "resumable upload finished");
    Ok(stored)
}

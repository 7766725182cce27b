//! One PATCH (or a creation's data): the body streamed to storage under the upload's lease,
//! then recorded; the last one makes the upload a file.

use std::{cell::Cell, mem, rc::Rc, sync::Arc};

use actix_web::{HttpRequest, web};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::Digest;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{
    protocol::{self, UPLOAD_LENGTH},
    record::{self, Leased, Progress},
};
use crate::{
    access::quota::Reservation,
    base::{
        db,
        error::ApiError,
        in_flight,
        telemetry::{self, metrics},
    },
    catalog::record::{FileRecord, NewFile},
    ingest::{clock::Clock, content_type::Detector},
    state::AppState,
    storage::resumable::{Appender, Partial},
};

/// As for multipart uploads: few thread hops and round trips, little memory per slow client.
const BATCH_BYTES: usize = 256 * 1024;

/// What a PATCH achieved.
pub struct Patched {
    pub offset: u64,
    pub expires_at: OffsetDateTime,
    /// The file the upload became, when this PATCH finished it.
    pub file: Option<FileRecord>,
}

/// An upload's lease, held for one request. Dropped while held (the request was cancelled), it
/// waits for storage writes under way, then gives the lease back.
pub struct Holding<'a> {
    state: &'a AppState,
    pub upload: Leased,
    appender: Option<Appender>,
    held: bool,
    /// Cancelled when a newer request asks for the upload (see `writers`).
    superseded: CancellationToken,
}

impl<'a> Holding<'a> {
    pub fn new(state: &'a AppState, upload: Leased) -> Self {
        Self {
            superseded: state.tus_writers.enter(upload.id),
            state,
            upload,
            appender: None,
            held: true,
        }
    }

    /// Gives the lease back without recording anything.
    pub async fn give_back(mut self) {
        self.held = false;
        let appender = self.appender.take();
        release(
            self.state.pool.clone(),
            self.upload.id,
            self.upload.lease,
            appender,
        )
        .await;
    }
}

/// Waits for storage writes under way, then gives the lease back. A failure is logged: another
/// instance takes the lease over once this one is gone, and a newer request asks for it.
async fn release(
    pool: sqlx::PgPool,
    id: uuid::Uuid,
    lease: uuid::Uuid,
    appender: Option<Appender>,
) {
    if let Some(appender) = appender {
        appender.settle().await;
    }
    if let Err(error) = record::release(&pool, id, lease).await {
        tracing::warn!(%id, %error, "could not give an upload's lease back");
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.state
            .tus_writers
            .leave(self.upload.id, &self.superseded);
        if !self.held {
            return;
        }
        let appender = self.appender.take();
        tokio::spawn(release(
            self.state.pool.clone(),
            self.upload.id,
            self.upload.lease,
            appender,
        ));
    }
}

/// Appends the request's body at `offset` and records how far the upload got; the lease is
/// given back either way.
#[tracing::instrument(name = "upload.patch", skip_all, fields(upload_id = %upload.id, offset))]
pub async fn patch(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    upload: Leased,
    offset: u64,
) -> Result<Patched, ApiError> {
    let in_flight = Arc::new(state.uploads.enter());
    let mut holding = Holding::new(state, upload);
    match append(&mut holding, req, payload, offset, &in_flight).await {
        Ok(patched) => Ok(patched),
        Err(error) => {
            if holding.held {
                holding.give_back().await;
            }
            Err(error)
        }
    }
}

async fn append(
    holding: &mut Holding<'_>,
    req: &HttpRequest,
    mut payload: web::Payload,
    offset: u64,
    in_flight: &in_flight::Shared,
) -> Result<Patched, ApiError> {
    let state = holding.state;
    let settings = &state.limits.settings;
    let upload = &holding.upload;
    if offset != upload.received as u64 {
        return Err(ApiError::OffsetMismatch {
            sent: offset,
            expected: upload.received as u64,
        });
    }
    let length = settle_length(upload, req, settings.max_file_bytes)?;
    let limit = length.unwrap_or(settings.max_file_bytes);
    let beyond = || match length {
        Some(length) => ApiError::BeyondLength(length),
        None => ApiError::FileTooLarge(settings.max_file_bytes),
    };
    if crate::server::declared_length(req.headers()).is_some_and(|body| offset + body > limit) {
        return Err(beyond());
    }
    let mut reservation = Reservation::resume(
        &state.bookkeeping,
        upload.id,
        upload.owner,
        state.quota,
        upload.reserved as u64,
        offset,
    );
    if let Some(length) = length {
        reservation.reserve_total(length).await?;
    }
    let mut checksum = protocol::checksum(req.headers())?;
    let mut detector = match (offset, &upload.content_type) {
        (0, None) => Some(detector(upload, state)?),
        _ => None,
    };
    tracing::debug!(id = %upload.id, offset, "receiving a PATCH");
    let partial = upload.partial()?;
    let appender = holding
        .appender
        .insert(state.storage.append(upload.id, partial).await?);

    let counted = Rc::new(Cell::new(0u64));
    let clock = Clock::new(settings, Rc::clone(&counted));
    let mut size = offset;
    let mut recorded = offset;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let mut cut = None;
    let superseded = holding.superseded.clone();
    let received = metrics::bytes_received();
    loop {
        let next = tokio::select! {
            next = clock.bounded(payload.next()) => next,
            () = superseded.cancelled() => {
                tracing::info!(id = %upload.id, "a newer request took this upload over");
                cut = Some(ApiError::UploadLocked);
                break;
            }
        };
        let chunk = match next {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                cut = Some(ApiError::InvalidRequest(format!(
                    "the body ended early: {error}"
                )));
                break;
            }
            Err(error) => {
                cut = Some(error);
                break;
            }
        };
        counted.set(counted.get() + chunk.len() as u64);
        received.increment(chunk.len() as u64);
        size += chunk.len() as u64;
        if size > limit {
            return Err(beyond());
        }
        if let Some(detector) = &mut detector {
            detector.observe(&chunk);
        }
        batch_bytes += chunk.len();
        batch.push(chunk);
        if batch_bytes >= BATCH_BYTES {
            let full: Vec<Bytes> = mem::take(&mut batch);
            reservation.add(mem::take(&mut batch_bytes) as u64).await?;
            if let Some(sum) = checksum.take() {
                checksum = Some(sum.update(full.clone()).await?);
            }
            appender.write(full).await?;
            // A checked chunk is kept whole or not at all: no progress before its end.
            if checksum.is_none() && size - recorded >= state.tus.checkpoint_bytes {
                let partial = appender.checkpoint().await?;
                let content_type = sniffed(detector.as_ref(), upload, state)?;
                save_progress(
                    state,
                    upload,
                    &partial,
                    length,
                    content_type.as_deref(),
                    false,
                )
                .await?;
                tracing::debug!(id = %upload.id, offset = partial.size, "progress recorded");
                recorded = partial.size;
            }
        }
    }
    // A body whose checksum cannot be checked (it was cut) or does not match is not kept.
    if let Some(sum) = checksum {
        if let Some(cut) = cut {
            return Err(cut);
        }
        if !sum.update(batch.clone()).await?.matches() {
            return Err(ApiError::ChunkChecksumMismatch);
        }
    }
    reservation.add(batch_bytes as u64).await?;
    let content_type = match size > offset {
        true => sniffed(detector.as_ref(), upload, state)?,
        false => upload.content_type.clone(),
    };
    let appender = holding.appender.take().expect("inserted above");
    let partial = appender.pause(batch).await?;
    let complete = length == Some(partial.size);
    let expires_at = save_progress(
        state,
        upload,
        &partial,
        length,
        content_type.as_deref(),
        !complete,
    )
    .await?;
    holding.held = complete;
    let offset = partial.size;
    if let Some(cut) = cut.filter(|_| !complete) {
        tracing::info!(id = %holding.upload.id, offset, "kept the bytes of a PATCH cut short");
        return Err(cut);
    }
    let file = match complete {
        true => Some(finish(holding, partial, content_type, in_flight).await?),
        false => None,
    };
    Ok(Patched {
        offset,
        expires_at,
        file,
    })
}

/// The content type the first bytes tell (checked against the allow-list), when this PATCH
/// brought the first bytes; else what was recorded.
fn sniffed(
    detector: Option<&Detector>,
    upload: &Leased,
    state: &AppState,
) -> Result<Option<String>, ApiError> {
    match detector {
        Some(detector) => {
            let content_type = detector.content_type();
            state.limits.allow.check(&content_type)?;
            Ok(Some(content_type))
        }
        None => Ok(upload.content_type.clone()),
    }
}

/// Records the upload's progress (and renews its expiry); `release` gives the lease back.
/// Returns the new expiry.
async fn save_progress(
    state: &AppState,
    upload: &Leased,
    partial: &Partial,
    length: Option<u64>,
    content_type: Option<&str>,
    release: bool,
) -> Result<OffsetDateTime, ApiError> {
    let expires_at = OffsetDateTime::now_utc() + state.tus.expiry();
    let progress = Progress {
        partial,
        length: length.map(|length| length as i64),
        content_type,
        expires_at,
    };
    if !record::save(&state.pool, upload, &progress, release).await? {
        return Err(ApiError::UploadLocked);
    }
    Ok(expires_at)
}

/// The upload's length once this request's `Upload-Length` (deferred length) is applied.
fn settle_length(
    upload: &Leased,
    req: &HttpRequest,
    max_file_bytes: u64,
) -> Result<Option<u64>, ApiError> {
    let known = upload.length.map(|length| length as u64);
    let Some(declared) = protocol::number(req.headers(), &UPLOAD_LENGTH)? else {
        return Ok(known);
    };
    match known {
        Some(known) if known != declared => Err(ApiError::InvalidRequest(format!(
            "the upload's length is {known} already; it cannot change"
        ))),
        Some(_) => Ok(known),
        None if declared < upload.received as u64 => Err(ApiError::InvalidRequest(format!(
            "the upload has {} bytes already, more than the Upload-Length {declared}",
            upload.received
        ))),
        None if declared > max_file_bytes => Err(ApiError::FileTooLarge(max_file_bytes)),
        None => Ok(Some(declared)),
    }
}

/// The content type from the client's `filetype`, refined by the first bytes.
fn detector(upload: &Leased, state: &AppState) -> Result<Detector, ApiError> {
    let declared = upload
        .declared_type
        .as_deref()
        .and_then(|declared| declared.parse::<mime::Mime>().ok());
    Detector::new(declared.as_ref(), &state.limits.allow)
}

/// Makes the whole upload a file: its object at its final place, then in one transaction its
/// row in `files` and the upload's row gone. Until that commits, the upload stays resumable
/// (a failure here is retried by the next PATCH or HEAD).
pub async fn finish(
    holding: &mut Holding<'_>,
    partial: Partial,
    content_type: Option<String>,
    in_flight: &in_flight::Shared,
) -> Result<FileRecord, ApiError> {
    let state = holding.state;
    let upload = &holding.upload;
    let content_type = match content_type {
        Some(content_type) => content_type,
        None => detector(upload, state)?.content_type(),
    };
    let file = NewFile {
        id: upload.id,
        filename: upload.filename.clone(),
        content_type,
        size: partial.size as i64,
        sha256: partial.hasher.clone().finalize().into(),
        inline: None,
    };
    let pending = state
        .storage
        .complete_resumable(upload.id, partial, Arc::clone(in_flight))
        .await?;
    let (pool, storage) = (state.pool.clone(), Arc::clone(&state.storage));
    let (id, lease, owner) = (upload.id, upload.lease, upload.owner);
    // Spawned so that it runs to its end even if the client goes away: a row committed while
    // its object is being removed would be lost.
    let stored = telemetry::spawn(async move {
        let committed = async {
            let mut tx = pool.begin().await?;
            if !record::delete(&mut tx, id, lease).await? {
                return Ok(None);
            }
            // The upload's row keeps its owner (a foreign key): the owner is there.
            let Some(stored) =
                crate::catalog::record::insert_all(&mut tx, owner, id, &[file], &[]).await?
            else {
                return Ok(None);
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stored.into_iter().next())
        }
        .await;
        match committed {
            Ok(Some(stored)) => {
                metrics::files_stored("tus", 1);
                pending.commit_in_background();
                if let Err(error) = storage.forget_resumable(id).await {
                    tracing::warn!(%id, %error, "could not remove a finished upload's own bytes; the sweep will");
                }
                Ok(stored)
            }
            Ok(None) => {
                pending.abandon().await;
                Err(ApiError::UploadLocked)
            }
            Err(error) => {
                if db::outcome_unknown(&error) {
                    pending.defer_to_sweep().await;
                } else {
                    pending.abandon().await;
                }
                Err(error.into())
            }
        }
    })
    .await
    .map_err(ApiError::internal)??;
    holding.held = false;
    tracing::info!(%id, size = stored.size, "resumable upload finished");
    Ok(stored)
}

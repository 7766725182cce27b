//! tus concatenation: a file sent as several partial uploads at once (`Upload-Concat: partial`,
//! tus-js-client's `parallelUploads`), then made one file by a final upload (`Upload-Concat:
//! final;<url> <url>…`) that names them in order.
//!
//! A partial upload is an upload like any other (owned, counted against its owner's quota,
//! resumable on any instance, expiring), save that, whole, it stays an upload. The final upload
//! takes the leases of all its partials and writes their bytes in order into a new object, then,
//! in one transaction, writes the file's row, removes the partials' rows and hands their quota
//! reservations to the file. A final upload interrupted anywhere leaves the partials as they
//! were, for the client to send it again.
//!
//! The SHA-256 and the content type are computed over the concatenation as it is made: each
//! partial's own hash state started at its own first byte, and SHA-256 states cannot be joined,
//! so the partials' bytes are read in order. On disk they are copied into the new file. In a
//! bucket each partial is first completed into an object of its own (`seal_partial`), then
//! copied into the new object's parts inside the bucket (UploadPartCopy) where it can be a part
//! (5 MiB to 5 GiB, after a whole part): only the hash reads its bytes back, and none is sent to
//! the bucket again. A smaller partial's bytes are written as a part's. The partials' objects go
//! with their rows.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header::HeaderMap};
use bytes::Bytes;

use super::{PROTOCOL, protocol::UPLOAD_CONCAT, upload};
use crate::api::resumable::{
    Resumable, commit,
    fields::{self, UPLOAD_LENGTH},
};
use crate::{
    access::auth::Owner,
    base::error::ApiError,
    catalog::record::{FileRecord, NewFile, Origin},
    events::hook::Proposal,
    ingest::{content_type::Detector, filename},
    resumable::record::{self, Leased},
};

/// The most partial uploads one final upload may name.
const MAX_PARTS: usize = 64;

/// What `Upload-Concat` asks for at creation.
pub enum Concat {
    Partial,
    /// The partial uploads to concatenate, in order.
    Final(Vec<uuid::Uuid>),
}

/// `Upload-Concat`, if sent; refused where the storage cannot concatenate.
pub fn requested(headers: &HeaderMap, tus: &Resumable) -> Result<Option<Concat>, ApiError> {
    let Some(value) = headers.get(UPLOAD_CONCAT) else {
        return Ok(None);
    };
    if !tus.ingest.storage.concatenates() {
        return Err(ApiError::InvalidRequest(
            "this server's bucket does not concatenate uploads (Upload-Concat; storage.s3.copy_parts is off): send the file as one upload"
                .into(),
        ));
    }
    let invalid = || {
        ApiError::InvalidRequest(
            "`Upload-Concat` is `partial`, or `final;` and the partial uploads' URLs in order, separated by spaces"
                .into(),
        )
    };
    let value = value.to_str().map_err(|_| invalid())?.trim();
    if value == "partial" {
        return Ok(Some(Concat::Partial));
    }
    let urls = value.strip_prefix("final;").ok_or_else(invalid)?;
    let ids: Vec<uuid::Uuid> = urls
        .split_ascii_whitespace()
        .map(|url| {
            let (_, id) = url.rsplit_once("/tus/").ok_or_else(invalid)?;
            id.trim_end_matches('/').parse().map_err(|_| invalid())
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() || ids.len() > MAX_PARTS {
        return Err(ApiError::InvalidRequest(format!(
            "a final upload names 1 to {MAX_PARTS} partial uploads"
        )));
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != ids.len() {
        return Err(ApiError::InvalidRequest(
            "a final upload names each partial upload once".into(),
        ));
    }
    Ok(Some(Concat::Final(ids)))
}

/// `POST /tus/` with `Upload-Concat: final;…`: the file made of the partial uploads named.
pub async fn create_final(
    tus: &Resumable,
    req: &HttpRequest,
    owner: Owner,
    ids: Vec<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    if headers.contains_key(UPLOAD_LENGTH) {
        return Err(ApiError::InvalidRequest(
            "a final upload's length is its partial uploads': send no Upload-Length".into(),
        ));
    }
    let metadata = fields::metadata(headers)?;
    let partials = take_all(tus, owner, &ids).await?;
    let made = concatenate(tus, owner, &partials, metadata).await;
    if made.is_err() {
        for partial in &partials {
            give_back(tus, partial).await;
        }
    }
    let file = made?;
    let mut created = HttpResponse::Created();
    created.insert_header((
        actix_web::http::header::LOCATION,
        format!("/tus/{}", file.id),
    ));
    Ok(upload::finished(&mut created, &file))
}

/// The leases of every partial upload named, each whole; none held if one cannot be had.
async fn take_all(
    tus: &Resumable,
    owner: Owner,
    ids: &[uuid::Uuid],
) -> Result<Vec<Leased>, ApiError> {
    let mut taken: Vec<Leased> = Vec::with_capacity(ids.len());
    for &id in ids {
        // Not `holding::lease`, which asks a running PATCH to stop: a final upload must not cut
        // a piece still being sent, and gets `423` instead.
        let instance = tus.ingest.storage.instance();
        let leased = record::take_lease(&tus.ingest.pool, id, owner.user_id, instance)
            .await
            .map_err(ApiError::from);
        let checked = match leased {
            Ok(Ok(leased)) if !leased.partial => Err((
                Some(leased),
                ApiError::InvalidRequest(format!("upload {id} is not a partial upload")),
            )),
            Ok(Ok(leased)) if leased.length != Some(leased.received) => {
                let detail = format!(
                    "partial upload {id} has {} of its {} bytes: finish it first",
                    leased.received,
                    leased
                        .length
                        .map_or("(undeclared)".into(), |l| l.to_string())
                );
                Err((Some(leased), ApiError::InvalidRequest(detail)))
            }
            Ok(Ok(leased)) => Ok(leased),
            Ok(Err(refused)) => Err((None, refused.into())),
            Err(error) => Err((None, error)),
        };
        match checked {
            Ok(leased) => taken.push(leased),
            Err((held, error)) => {
                for partial in taken.iter().chain(held.as_ref()) {
                    give_back(tus, partial).await;
                }
                return Err(error);
            }
        }
    }
    Ok(taken)
}

async fn give_back(tus: &Resumable, partial: &Leased) {
    let (pool, id) = (&tus.ingest.pool, partial.id);
    if let Err(error) = record::release(pool, id, partial.lease, partial.reserved).await {
        tracing::warn!(%id, %error, "could not give a partial upload's lease back");
    }
}

/// Writes the partials' bytes in order into a new object, then commits the file's row with the
/// partials' rows gone, in one transaction.
async fn concatenate(
    tus: &Resumable,
    owner: Owner,
    partials: &[Leased],
    metadata: fields::Metadata,
) -> Result<FileRecord, ApiError> {
    let ingest = &tus.ingest;
    let total: u64 = partials.iter().map(|p| p.received as u64).sum();
    let max = ingest.limits.settings.max_file_bytes;
    if total > max {
        return Err(ApiError::FileTooLarge(max));
    }
    let declared = metadata
        .filetype
        .as_deref()
        .and_then(|filetype| filetype.parse::<mime::Mime>().ok());
    let mut detector = Detector::new(declared.as_ref(), &ingest.limits.allow)?;
    let lifetime = metadata.lifetime(&ingest.limits.settings)?;
    let filename = filename::sanitize(metadata.filename.as_deref().unwrap_or_default());
    // The file is proposed as a whole before it is made, as its pieces were.
    let attached = match &ingest.hook {
        Some(hook) => {
            hook.admit(Proposal {
                user_id: owner.user_id,
                user: None,
                upload_link: None,
                protocol: PROTOCOL,
                filename: &filename,
                content_type: metadata.filetype.as_deref(),
                size: Some(total),
                metadata: metadata.pairs.clone(),
            })
            .await?
        }
        None => None,
    };
    let id = uuid::Uuid::now_v7();
    let in_flight = Arc::new(ingest.in_flight.enter());
    let mut writer = ingest.storage.create(id, Arc::clone(&in_flight));
    for partial in partials {
        let (source, length) = (partial.id, partial.received as u64);
        ingest
            .storage
            .seal_partial(source, partial.partial()?)
            .await?;
        let bytes = ingest.storage.read_partial(source, length).await?;
        let observe = |chunk: &Bytes| {
            if !detector.is_ready() {
                detector.observe(chunk);
            }
        };
        writer.append_object(source, length, bytes, observe).await?;
    }
    let content_type = detector.content_type();
    ingest.limits.allow.check(&content_type)?;
    let (written, pending) = writer.finish(Vec::new()).await?;
    if written.size != total {
        return Err(ApiError::internal(format!(
            "the partial uploads hold {total} bytes but {} were written",
            written.size
        )));
    }
    let file = NewFile {
        id,
        filename,
        content_type,
        size: total as i64,
        sha256: written.sha256,
        inline: None,
        lifetime,
        upload_link: None,
        metadata: attached,
        origin: Origin::here(PROTOCOL),
    };
    let leases = partials.iter().map(|p| (p.id, p.lease)).collect();
    let stored = commit::commit_file(tus, owner.user_id, file, leases, pending).await?;
    tracing::info!(%id, size = stored.size, parts = partials.len(), "partial uploads concatenated");
    Ok(stored)
}

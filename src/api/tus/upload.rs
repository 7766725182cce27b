//! The requests on one upload, `/tus/{id}`: how far it is (`HEAD`), its next bytes (`PATCH`),
//! its end (`DELETE`).

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use uuid::Uuid;

use super::{
    OnAnUpload, Tus, TusResumable,
    holding::Holding,
    lease,
    protocol::{
        self, UPLOAD_CONCAT, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH, UPLOAD_METADATA,
        UPLOAD_OFFSET, http_date, resumable,
    },
    receive::{self, Patched},
    sends_bytes,
};
use crate::{
    access::auth::Owner,
    api::openapi::responses::{Authenticated, NotFound},
    base::{error::ApiError, problem::Problem},
    catalog::record::FileRecord,
    resumable::{
        expiry,
        record::{self, Refused},
    },
};

/// `HEAD /tus/{id}`: how far the upload is. A finished upload answers as a whole file, so that
/// a client that missed the last answer learns it is done.
#[utoipa::path(head, path = "/tus/{id}", tag = "resumable", security(("token" = [])),
    params(("id" = Uuid, Path), ("Tus-Resumable" = inline(TusResumable), Header)),
    responses(
        (status = 200, description = "`Upload-Offset` says how far it is; a finished upload \
            also has `Content-Location`",
            headers(("Upload-Offset" = u64), ("Upload-Length" = Option<u64>),
                ("Upload-Defer-Length" = Option<String>), ("Upload-Expires" = Option<String>),
                ("Upload-Metadata" = Option<String>), ("Content-Location" = Option<String>))),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`upload_expired`"),
        OnAnUpload, NotFound, Authenticated,
    ))]
pub(super) async fn head(
    req: HttpRequest,
    tus: web::Data<Tus>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let id = id.into_inner();
    let Some(status) = record::status(&tus.ingest.pool, id, owner.user_id).await? else {
        let file = crate::catalog::record::find(&tus.ingest.pool, owner.user_id, id)
            .await?
            .ok_or(ApiError::NotFound("upload"))?;
        return Ok(finished(&mut HttpResponse::Ok(), &file));
    };
    if status.expired {
        return Err(ApiError::UploadExpired);
    }
    if status.length == Some(status.received) && !status.partial {
        // Every byte is stored but the file was not made (its commit failed): make it now.
        let file = finish_stored(&tus, id, owner).await?;
        return Ok(finished(&mut HttpResponse::Ok(), &file));
    }
    let mut ok = HttpResponse::Ok();
    resumable(&mut ok)
        .insert_header((UPLOAD_OFFSET, status.received))
        .insert_header((UPLOAD_EXPIRES, http_date(status.expires_at)));
    match status.length {
        Some(length) => ok.insert_header((UPLOAD_LENGTH, length)),
        None => ok.insert_header((UPLOAD_DEFER_LENGTH, "1")),
    };
    if let Some(metadata) = status.metadata {
        ok.insert_header((UPLOAD_METADATA, metadata));
    }
    if status.partial {
        ok.insert_header((UPLOAD_CONCAT, "partial"));
    }
    Ok(ok.finish())
}

async fn finish_stored(tus: &Tus, id: Uuid, owner: Owner) -> Result<FileRecord, ApiError> {
    let leased = lease(tus, id, owner).await??;
    let in_flight = std::sync::Arc::new(tus.ingest.in_flight.enter());
    let mut holding = Holding::new(tus, leased);
    let finished = match holding.upload.partial() {
        Ok(partial) => {
            let content_type = holding.upload.content_type.clone();
            receive::finish(&mut holding, partial, content_type, &in_flight).await
        }
        Err(error) => Err(error),
    };
    if finished.is_err() {
        holding.give_back().await;
    }
    finished
}

/// The answer about an upload that is a file now: its whole length, and where the file is.
pub(super) fn finished(
    builder: &mut actix_web::HttpResponseBuilder,
    file: &FileRecord,
) -> HttpResponse {
    resumable(builder)
        .insert_header((UPLOAD_OFFSET, file.size))
        .insert_header((UPLOAD_LENGTH, file.size))
        .insert_header((header::CONTENT_LOCATION, file.location()))
        .finish()
}

/// `PATCH /tus/{id}`: the next bytes, at `Upload-Offset`.
///
/// A client that cannot send `PATCH` sends `POST` with `X-HTTP-Method-Override: PATCH`.
#[utoipa::path(patch, path = "/tus/{id}", tag = "resumable", security(("token" = [])),
    params(
        ("id" = Uuid, Path),
        ("Tus-Resumable" = inline(TusResumable), Header),
        ("Upload-Offset" = u64, Header, description = "where these bytes start: the upload's offset"),
        ("Upload-Length" = Option<u64>, Header, description = "the size, once, for a deferred upload"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this body"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "stored; `Upload-Offset` is the new offset (the whole size \
            and `Content-Location` once the file is complete)",
            headers(("Upload-Offset" = u64), ("Upload-Expires" = Option<String>),
                ("Content-Location" = Option<String>))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a header is missing or not valid"),
        (status = 408, body = Problem, content_type = "application/problem+json",
            description = "`upload_timeout`: what arrived was kept"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "`offset_mismatch`: HEAD, then continue at its offset"),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`upload_expired`"),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`length_exceeded`, `file_too_large` or `quota_exceeded`"),
        (status = 415, body = Problem, content_type = "application/problem+json",
            description = "`not_offset_octet_stream` or `unsupported_media_type`"),
        (status = 460, body = Problem, content_type = "application/problem+json",
            description = "`chunk_checksum_mismatch`: nothing of this body was kept"),
        (status = 507, body = Problem, content_type = "application/problem+json",
            description = "`storage_full`"),
        OnAnUpload, NotFound, Authenticated,
    ))]
pub(super) async fn patch(
    req: HttpRequest,
    payload: web::Payload,
    tus: web::Data<Tus>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    if !protocol::is_offset_octet_stream(headers) {
        return Err(ApiError::NotOffsetOctetStream);
    }
    let offset = protocol::number(headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::InvalidRequest("a PATCH needs `Upload-Offset`".into()))?;
    let _slot = tus.ingest.slots.take(&req)?;
    let id = id.into_inner();
    let leased = match lease(&tus, id, owner).await? {
        Ok(leased) => leased,
        Err(Refused::NotFound) => {
            return patch_finished(&tus, payload, owner, id, offset).await;
        }
        Err(refused) => return Err(refused.into()),
    };
    let patched = receive::patch(&tus, &req, payload, leased, offset).await?;
    Ok(answer_patch(&mut HttpResponse::NoContent(), &patched))
}

/// A PATCH of an upload that is a file already: a retry of its last PATCH that sends nothing
/// new is answered as that PATCH was.
async fn patch_finished(
    tus: &Tus,
    mut payload: web::Payload,
    owner: Owner,
    id: Uuid,
    offset: u64,
) -> Result<HttpResponse, ApiError> {
    let file = crate::catalog::record::find(&tus.ingest.pool, owner.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("upload"))?;
    let size = file.size as u64;
    if offset != size {
        return Err(ApiError::OffsetMismatch {
            sent: offset,
            expected: size,
        });
    }
    if sends_bytes(&mut payload).await {
        return Err(ApiError::BeyondLength(size));
    }
    Ok(finished(&mut HttpResponse::NoContent(), &file))
}

pub(super) fn answer_patch(
    builder: &mut actix_web::HttpResponseBuilder,
    patched: &Patched,
) -> HttpResponse {
    if let Some(file) = &patched.file {
        return finished(builder, file);
    }
    resumable(builder)
        .insert_header((UPLOAD_OFFSET, patched.offset))
        .insert_header((UPLOAD_EXPIRES, http_date(patched.expires_at)))
        .finish()
}

/// `DELETE /tus/{id}` (termination): the upload and its bytes go, its quota comes back.
///
/// Or `POST` with `X-HTTP-Method-Override: DELETE`.
#[utoipa::path(delete, path = "/tus/{id}", tag = "resumable", security(("token" = [])),
    params(("id" = Uuid, Path), ("Tus-Resumable" = inline(TusResumable), Header)),
    responses(
        (status = 204, description = "terminated"),
        OnAnUpload, NotFound, Authenticated,
    ))]
pub(super) async fn terminate(
    req: HttpRequest,
    tus: web::Data<Tus>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let id = id.into_inner();
    let leased = lease(&tus, id, owner).await?;
    let leased = match leased {
        Ok(leased) => leased,
        // An expired upload is as good as terminated.
        Err(Refused::Expired) => return Ok(resumable(&mut HttpResponse::NoContent()).finish()),
        Err(refused) => return Err(refused.into()),
    };
    expiry::remove(
        &tus.ingest.pool,
        &tus.ingest.storage,
        leased.id,
        leased.lease,
        leased.multipart_id.as_deref(),
    )
    .await?;
    Ok(resumable(&mut HttpResponse::NoContent()).finish())
}

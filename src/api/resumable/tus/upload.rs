//! The requests on one upload, `/tus/{id}`: how far it is (`HEAD`), its next bytes (`PATCH`),
//! its end (`DELETE`).

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use uuid::Uuid;

use super::{
    OnAnUpload, PROTOCOL, TusResumable,
    protocol::{self, UPLOAD_CONCAT, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, http_date},
};
use crate::{
    access::auth::Owner,
    api::{
        declared_length,
        openapi::responses::{Authenticated, NotFound},
        resumable::{
            Resumable,
            fields::{UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET, no_store, number},
            finished::{self, Found},
            holding::{Holding, lease},
            receive::{self, Append, Patched},
        },
    },
    base::{error::ApiError, problem::Problem},
    catalog::record::FileRecord,
    resumable::{
        expiry::{self, Removal},
        record::Refused,
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
    tus: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let status = match finished::look_up(&tus, id.into_inner(), owner, PROTOCOL).await? {
        Found::File(file) => return Ok(finished(&mut HttpResponse::Ok(), &file)),
        Found::Upload(status) => status,
    };
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok)
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

/// The answer about an upload that is a file now: its whole length, and where the file is.
pub(super) fn finished(
    builder: &mut actix_web::HttpResponseBuilder,
    file: &FileRecord,
) -> HttpResponse {
    no_store(builder)
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
        ("Upload-Length" = Option<u64>, Header, nullable = false,
            description = "the size, once, for a deferred upload"),
        ("Upload-Checksum" = Option<String>, Header, nullable = false,
            pattern = "^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$", description = "`sha1 <base64>` or `sha256 <base64>` of this body"),
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
    tus: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    if !protocol::is_offset_octet_stream(headers) {
        return Err(ApiError::NotOffsetOctetStream);
    }
    let offset = number(headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::InvalidRequest("a PATCH needs `Upload-Offset`".into()))?;
    let _slot = tus.ingest.slots.take(&req)?;
    let id = id.into_inner();
    let leased = match lease(&tus, id, owner).await? {
        Ok(leased) => leased,
        Err(Refused::NotFound) => {
            let file = finished::replay(&tus, payload, owner, id, offset).await?;
            return Ok(finished(&mut HttpResponse::NoContent(), &file));
        }
        Err(refused) => return Err(refused.into()),
    };
    // Read once the upload is known to be there, so that an unknown one is `404` whatever else
    // is wrong.
    let append = match appending(headers, offset) {
        Ok(append) => append,
        Err(error) => {
            Holding::new(&tus, leased).give_back().await;
            return Err(error);
        }
    };
    let patched = receive::patch(&tus, payload, leased, append).await?;
    Ok(answer_patch(&mut HttpResponse::NoContent(), &patched))
}

/// What a tus request asks of an upload: its bytes at `offset`, the length if it declares it
/// (a deferred length), and a checksum of its body.
pub(super) fn appending(
    headers: &actix_web::http::header::HeaderMap,
    offset: u64,
) -> Result<Append, ApiError> {
    Ok(Append {
        offset,
        length: number(headers, &UPLOAD_LENGTH)?,
        body: declared_length(headers),
        checksum: protocol::checksum(headers)?,
        last: false,
        protocol: PROTOCOL,
    })
}

pub(super) fn answer_patch(
    builder: &mut actix_web::HttpResponseBuilder,
    patched: &Patched,
) -> HttpResponse {
    if let Some(file) = &patched.file {
        return finished(builder, file);
    }
    no_store(builder)
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
    tus: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let id = id.into_inner();
    let leased = lease(&tus, id, owner).await?;
    let leased = match leased {
        Ok(leased) => leased,
        // An expired upload is as good as terminated.
        Err(Refused::Expired) => return Ok(no_store(&mut HttpResponse::NoContent()).finish()),
        Err(refused) => return Err(refused.into()),
    };
    expiry::remove(
        &tus.ingest.pool,
        &tus.ingest.storage,
        leased.id,
        leased.lease,
        leased.multipart_id.as_deref(),
        Removal::Terminated,
    )
    .await?;
    Ok(no_store(&mut HttpResponse::NoContent()).finish())
}

//! The upload resource, `/resumable/{id}`: how far it is (`HEAD`), its next bytes
//! (`PATCH`), its cancellation (`DELETE`).

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    PROTOCOL, answer, answered, completed,
    protocol::{self, UPLOAD_COMPLETE, UPLOAD_LIMIT, boolean, limit},
};
use crate::{
    access::auth::Owner,
    api::{
        declared_length,
        openapi::responses::{Authenticated, NotFound},
        resumable::{
            Resumable,
            fields::{UPLOAD_LENGTH, UPLOAD_OFFSET, no_store, number},
            finished::{self, Found},
            holding::lease,
            receive::{self, Append},
        },
    },
    base::{error::ApiError, problem::Problem},
    resumable::{
        expiry::{self, Removal},
        record::Refused,
    },
};

/// `HEAD /resumable/{id}`: how far the upload is. An upload that is
/// a file now answers complete, with the file's place.
#[utoipa::path(head, path = "/resumable/{id}", tag = "resumable", security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "`Upload-Offset` says how far it is; `Upload-Complete: ?1` \
            once it is a file, at `Content-Location`",
            headers(("Upload-Offset" = u64), ("Upload-Complete" = String),
                ("Upload-Length" = Option<u64>), ("Upload-Limit" = String),
                ("Content-Location" = Option<String>))),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`upload_expired`"),
        NotFound, Authenticated,
    ))]
pub(super) async fn retrieve(
    req: HttpRequest,
    resumable: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> HttpResponse {
    let found = status(&req, &resumable, owner, id.into_inner()).await;
    answered(&resumable, found)
}

async fn status(
    req: &HttpRequest,
    resumable: &Resumable,
    owner: Owner,
    id: Uuid,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let found = finished::look_up(resumable, id, owner, PROTOCOL).await?;
    let max_size = resumable.ingest.limits.settings.max_file_bytes;
    let mut ok = HttpResponse::NoContent();
    no_store(&mut ok);
    Ok(match found {
        Found::File(file) => ok
            .insert_header((UPLOAD_COMPLETE, boolean(true)))
            .insert_header((UPLOAD_OFFSET, file.size))
            .insert_header((UPLOAD_LENGTH, file.size))
            .insert_header((UPLOAD_LIMIT, limit(max_size, None)))
            .insert_header((header::CONTENT_LOCATION, file.location()))
            .finish(),
        Found::Upload(status) => {
            let max_age = (status.expires_at - OffsetDateTime::now_utc()).whole_seconds();
            ok.insert_header((UPLOAD_COMPLETE, boolean(false)))
                .insert_header((UPLOAD_OFFSET, status.received))
                .insert_header((UPLOAD_LIMIT, limit(max_size, Some(max_age))));
            if let Some(length) = status.length {
                ok.insert_header((UPLOAD_LENGTH, length));
            }
            ok.finish()
        }
    })
}

/// `PATCH /resumable/{id}`: the next bytes, at `Upload-Offset`.
#[utoipa::path(patch, path = "/resumable/{id}", tag = "resumable", security(("token" = [])),
    params(
        ("id" = Uuid, Path),
        ("Upload-Offset" = u64, Header, description = "where these bytes start: the upload's offset"),
        ("Upload-Complete" = String, Header, pattern = r"^\?[01]$",
            description = "`?1`: these are the last bytes"),
        ("Upload-Length" = Option<u64>, Header, nullable = false,
            description = "the file's size, if not told before"),
    ),
    request_body(content = Vec<u8>, content_type = "application/partial-upload"),
    responses(
        (status = 200, body = crate::catalog::record::FileObject, description = "the last \
            bytes: the file (`Upload-Complete: ?1`, `Location: /files/{id}`)",
            headers(("Location" = String), ("Upload-Complete" = String), ("Upload-Offset" = u64))),
        (status = 204, description = "stored; `Upload-Offset` is the new offset",
            headers(("Upload-Offset" = u64), ("Upload-Complete" = String), ("Upload-Limit" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a field missing or not valid, or a length that \
                contradicts the upload's"),
        (status = 408, body = Problem, content_type = "application/problem+json",
            description = "`upload_timeout`: what arrived was kept"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "`offset_mismatch`; `Upload-Offset` is the upload's offset"),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`upload_expired`"),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`length_exceeded`, `file_too_large` or `quota_exceeded`"),
        (status = 415, body = Problem, content_type = "application/problem+json",
            description = "`not_partial_upload` or `unsupported_media_type`"),
        (status = 423, body = Problem, content_type = "application/problem+json",
            description = "`upload_locked`"),
        NotFound, Authenticated,
    ))]
pub(super) async fn append(
    req: HttpRequest,
    payload: web::Payload,
    resumable: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> HttpResponse {
    let appended = append_bytes(&req, payload, &resumable, owner, id.into_inner()).await;
    answered(&resumable, appended)
}

async fn append_bytes(
    req: &HttpRequest,
    payload: web::Payload,
    resumable: &Resumable,
    owner: Owner,
    id: Uuid,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    let offset = number(headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::InvalidRequest("a PATCH needs `Upload-Offset`".into()))?;
    let last = protocol::required_complete(headers)?;
    if !protocol::is_partial_upload(headers) {
        return Err(ApiError::NotPartialUpload);
    }
    let length = number(headers, &UPLOAD_LENGTH)?;
    let _slot = resumable.ingest.slots.take(req)?;
    let leased = match lease(resumable, id, owner).await? {
        Ok(leased) => leased,
        Err(Refused::NotFound) => {
            let file = finished::replay(resumable, payload, owner, id, offset).await?;
            return Ok(completed(&file));
        }
        Err(refused) => return Err(refused.into()),
    };
    let append = Append {
        offset,
        length,
        body: declared_length(headers),
        checksum: None,
        last,
        protocol: PROTOCOL,
    };
    let patched = receive::patch(resumable, payload, leased, append).await?;
    Ok(answer(&mut HttpResponse::NoContent(), &patched, resumable))
}

/// `DELETE /resumable/{id}`: the upload and its bytes go, its quota comes back.
#[utoipa::path(delete, path = "/resumable/{id}", tag = "resumable", security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "cancelled"),
        (status = 423, body = Problem, content_type = "application/problem+json",
            description = "`upload_locked`"),
        NotFound, Authenticated,
    ))]
pub(super) async fn cancel(
    req: HttpRequest,
    resumable: web::Data<Resumable>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> HttpResponse {
    let removed = remove(&req, &resumable, owner, id.into_inner()).await;
    answered(&resumable, removed)
}

async fn remove(
    req: &HttpRequest,
    resumable: &Resumable,
    owner: Owner,
    id: Uuid,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    match lease(resumable, id, owner).await? {
        Ok(leased) => {
            let (pool, storage) = (&resumable.ingest.pool, &resumable.ingest.storage);
            let multipart = leased.multipart_id.as_deref();
            let (id, lease) = (leased.id, leased.lease);
            expiry::remove(pool, storage, id, lease, multipart, Removal::Terminated).await?;
        }
        // An expired upload is as good as cancelled.
        Err(Refused::Expired) => {}
        Err(refused) => return Err(refused.into()),
    }
    Ok(no_store(&mut HttpResponse::NoContent()).finish())
}

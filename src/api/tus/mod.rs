//! Resumable uploads: tus 1.0 (https://tus.io/protocols/resumable-upload) under `/tus/`, with
//! the extensions creation, creation-with-upload, creation-defer-length, termination,
//! checksum and expiration.
//!
//! An upload's state lives in Postgres (`record`), so that any instance continues it: a PATCH
//! takes the upload's lease, appends to storage, and records the new offset with the SHA-256
//! state. The upload's id is the id of the file it becomes: `/tus/{id}` turns into
//! `/files/{id}` when its last byte is stored.

mod protocol;
mod receive;
mod record;
pub mod sweep;
pub mod writers;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError, guard,
    http::{Method, header},
    middleware::from_fn,
    web,
};
use futures_util::StreamExt;
use time::OffsetDateTime;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

pub use self::protocol::VERSION;
use self::{
    protocol::{
        CHECKSUM_ALGORITHMS, EXTENSIONS, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE,
        TUS_VERSION, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH, UPLOAD_METADATA,
        UPLOAD_OFFSET, http_date, resumable,
    },
    receive::{Holding, Patched},
    record::{NewUpload, Refused},
};
use crate::{
    access::{
        auth::{self, Owner},
        quota::{self, Reservation},
    },
    api::openapi::{
        Documented,
        responses::{Authenticated, NotFound},
    },
    base::{error::ApiError, problem::Problem},
    catalog::record::FileRecord,
    ingest::{content_type::Detector, filename},
    state::AppState,
};

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/tus/",
            web::resource(["/tus", "/tus/"])
                .guard(guard::Options())
                .route(web::route().to(options))
                .wrap(from_fn(protocol::tag)),
        )
        .with(__path_options),
    )
    .service(
        Documented::new(
            "/tus/",
            web::resource(["/tus", "/tus/"])
                .route(web::post().to(create))
                .wrap(from_fn(auth::identify))
                .wrap(from_fn(protocol::tag)),
        )
        .with(__path_create),
    )
    .service(
        Documented::new(
            "/tus/{id}",
            web::resource("/tus/{id}")
                .route(web::head().to(head))
                .route(web::patch().to(patch))
                .route(web::delete().to(terminate))
                .route(web::method(Method::OPTIONS).to(options))
                .wrap(from_fn(auth::identify))
                .wrap(from_fn(protocol::tag)),
        )
        .with(__path_head)
        .with(__path_patch)
        .with(__path_terminate),
    );
}

/// What any request on an upload may answer besides its own outcomes.
#[derive(utoipa::IntoResponses)]
pub enum OnAnUpload {
    #[response(
        status = 412,
        description = "`tus_version_unsupported`: `Tus-Resumable` missing or not `1.0.0`",
        content_type = "application/problem+json",
        headers(("Tus-Version" = String))
    )]
    Version(Problem),
    #[response(
        status = 423,
        description = "`upload_locked`: another request holds the upload and did not let go",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64))
    )]
    Locked(Problem),
}

/// The protocol version every request but `OPTIONS` names in `Tus-Resumable`.
#[derive(utoipa::ToSchema)]
pub enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1,
}

/// What the server supports (tus discovery); no token needed.
#[utoipa::path(options, path = "/tus/", tag = "resumable",
    responses((status = 204, description = "the protocol's capabilities",
        headers(
            ("Tus-Resumable" = String), ("Tus-Version" = String), ("Tus-Extension" = String),
            ("Tus-Max-Size" = u64), ("Tus-Checksum-Algorithm" = String),
        ))))]
async fn options(state: web::Data<AppState>) -> HttpResponse {
    resumable(&mut HttpResponse::NoContent())
        .insert_header((TUS_VERSION, VERSION))
        .insert_header((TUS_EXTENSION, EXTENSIONS))
        .insert_header((TUS_MAX_SIZE, state.limits.settings.max_file_bytes))
        .insert_header((TUS_CHECKSUM_ALGORITHM, CHECKSUM_ALGORITHMS))
        .finish()
}

/// `POST /tus/`: a new upload of `Upload-Length` bytes (or deferred), with its first bytes in
/// the body if the client sends them (creation-with-upload).
#[utoipa::path(post, path = "/tus/", tag = "resumable", security(("token" = [])),
    params(
        ("Tus-Resumable" = inline(TusResumable), Header),
        ("Upload-Length" = u64, Header, description = "the file's size. Or, not described here \
            because OpenAPI cannot say that two headers exclude each other: no `Upload-Length` \
            but `Upload-Defer-Length: 1`, and the size comes with a later PATCH \
            (creation-defer-length)"),
        ("Upload-Metadata" = Option<String>, Header, description = "`filename`, `filetype`: key and base64 value pairs, comma-separated"),
    ),
    request_body(content = Option<Vec<u8>>, content_type = "application/offset+octet-stream",
        description = "the first bytes (creation-with-upload); none otherwise"),
    responses(
        (status = 201, description = "created; `Location` is where to PATCH",
            headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a header is missing or not valid"),
        (status = 412, body = Problem, content_type = "application/problem+json",
            description = "`tus_version_unsupported`", headers(("Tus-Version" = String))),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`file_too_large`, `quota_exceeded` or `length_exceeded`"),
        (status = 415, body = Problem, content_type = "application/problem+json",
            description = "`unsupported_media_type` (`filetype` not allowed) or `not_offset_octet_stream`"),
        Authenticated,
    ))]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    let length = protocol::creation_length(headers)?;
    let max = state.limits.settings.max_file_bytes;
    if length.is_some_and(|length| length > max) {
        return Err(ApiError::FileTooLarge(max));
    }
    let with_data = protocol::is_offset_octet_stream(headers);
    if !with_data && crate::server::declared_length(headers).is_some_and(|body| body > 0) {
        return Err(ApiError::NotOffsetOctetStream);
    }
    let metadata = protocol::metadata(headers)?;
    let declared_type = metadata
        .filetype
        .as_deref()
        .and_then(|filetype| filetype.parse::<mime::Mime>().ok());
    // A declared type that is not allowed is refused before a byte is sent.
    Detector::new(declared_type.as_ref(), &state.limits.allow)?;
    let upload = NewUpload {
        id: Uuid::now_v7(),
        owner: owner.user_id,
        length,
        metadata: metadata.raw,
        filename: filename::sanitize(metadata.filename.as_deref().unwrap_or_default()),
        declared_type: declared_type.map(|declared| declared.to_string()),
        multipart_id: None,
        expires_at: OffsetDateTime::now_utc() + state.tus.expiry(),
    };
    let upload = start(&state, upload).await?;
    let location = format!("/tus/{}", upload.id);
    let mut created = HttpResponse::Created();
    resumable(&mut created).insert_header((header::LOCATION, location.as_str()));
    if !with_data {
        return Ok(created
            .insert_header((UPLOAD_EXPIRES, http_date(upload.expires_at)))
            .finish());
    }
    let leased = lease(&state, upload.id, owner).await??;
    match receive::patch(&state, &req, payload, leased, 0).await {
        Ok(patched) => Ok(answer_patch(&mut created, &patched)),
        // The upload exists even though its first bytes failed: say where, so that the client
        // can resume or terminate it instead of leaving it to expire.
        Err(error) => {
            let mut refused = error.error_response();
            refused.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_str(&location).expect("a path is a header value"),
            );
            Ok(refused)
        }
    }
}

/// Reserves the upload's quota, prepares its storage and records it; undoes what was done if a
/// step fails.
async fn start(state: &AppState, mut upload: NewUpload) -> Result<NewUpload, ApiError> {
    let mut reservation = Reservation::resume(
        &state.bookkeeping,
        upload.id,
        upload.owner,
        state.quota,
        0,
        0,
    );
    if let Some(length) = upload.length {
        reservation.reserve_total(length).await?;
    }
    let recorded = async {
        upload.multipart_id = state.storage.start_resumable(upload.id).await?;
        let mut conn = state.pool.acquire().await?;
        record::create(&mut conn, &upload).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = recorded {
        let _ = quota::release(&state.bookkeeping, upload.id).await;
        let _ = state
            .storage
            .discard_resumable(upload.id, upload.multipart_id.as_deref())
            .await;
        return Err(error);
    }
    tracing::info!(
        id = %upload.id,
        length = upload.length,
        deferred = upload.length.is_none(),
        "resumable upload created"
    );
    Ok(upload)
}

/// Waits after asking the request that holds an upload's lease to let go: it records what it
/// has received first.
const RELEASE_WAITS_MS: [u64; 7] = [50, 100, 200, 400, 800, 1600, 2000];

/// Takes the upload's lease for this request. A request that holds it (on any instance) is
/// asked to stop, as tusd does: the client has come back, most likely because the connection
/// of that request died without a word.
async fn lease(
    state: &AppState,
    id: Uuid,
    owner: Owner,
) -> Result<Result<record::Leased, Refused>, sqlx::Error> {
    let instance = state.storage.instance();
    let mut taken = record::take_lease(&state.pool, id, owner.user_id, instance).await?;
    if let Err(Refused::Locked(Some(holder))) = taken {
        writers::ask_release(&state.tus_writers, &state.pool, instance, holder, id).await?;
        for wait in RELEASE_WAITS_MS {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            taken = record::take_lease(&state.pool, id, owner.user_id, instance).await?;
            if !matches!(taken, Err(Refused::Locked(_))) {
                break;
            }
        }
    }
    Ok(taken)
}

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
async fn head(
    req: HttpRequest,
    state: web::Data<AppState>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let id = id.into_inner();
    let Some(status) = record::status(&state.pool, id, owner.user_id).await? else {
        let file = crate::catalog::record::find(&state.pool, owner.user_id, id)
            .await?
            .ok_or(ApiError::NotFound("upload"))?;
        return Ok(finished(&mut HttpResponse::Ok(), &file));
    };
    if status.expired {
        return Err(ApiError::UploadExpired);
    }
    if status.length == Some(status.received) {
        // Every byte is stored but the file was not made (its commit failed): make it now.
        let file = finish_stored(&state, id, owner).await?;
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
    Ok(ok.finish())
}

async fn finish_stored(state: &AppState, id: Uuid, owner: Owner) -> Result<FileRecord, ApiError> {
    let leased = lease(state, id, owner).await??;
    let in_flight = std::sync::Arc::new(state.uploads.enter());
    let mut holding = Holding::new(state, leased);
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
fn finished(builder: &mut actix_web::HttpResponseBuilder, file: &FileRecord) -> HttpResponse {
    resumable(builder)
        .insert_header((UPLOAD_OFFSET, file.size))
        .insert_header((UPLOAD_LENGTH, file.size))
        .insert_header((header::CONTENT_LOCATION, file.location()))
        .finish()
}

/// `PATCH /tus/{id}`: the next bytes, at `Upload-Offset`.
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
async fn patch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
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
    let id = id.into_inner();
    let leased = match lease(&state, id, owner).await? {
        Ok(leased) => leased,
        Err(Refused::NotFound) => {
            return patch_finished(&state, payload, owner, id, offset).await;
        }
        Err(refused) => return Err(refused.into()),
    };
    let patched = receive::patch(&state, &req, payload, leased, offset).await?;
    Ok(answer_patch(&mut HttpResponse::NoContent(), &patched))
}

/// A PATCH of an upload that is a file already: a retry of its last PATCH that sends nothing
/// new is answered as that PATCH was.
async fn patch_finished(
    state: &AppState,
    mut payload: web::Payload,
    owner: Owner,
    id: Uuid,
    offset: u64,
) -> Result<HttpResponse, ApiError> {
    let file = crate::catalog::record::find(&state.pool, owner.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("upload"))?;
    let size = file.size as u64;
    if offset != size {
        return Err(ApiError::OffsetMismatch {
            sent: offset,
            expected: size,
        });
    }
    let sends_more = match payload.next().await {
        Some(Ok(chunk)) => !chunk.is_empty(),
        _ => false,
    };
    if sends_more {
        return Err(ApiError::BeyondLength(size));
    }
    Ok(finished(&mut HttpResponse::NoContent(), &file))
}

fn answer_patch(builder: &mut actix_web::HttpResponseBuilder, patched: &Patched) -> HttpResponse {
    if let Some(file) = &patched.file {
        return finished(builder, file);
    }
    resumable(builder)
        .insert_header((UPLOAD_OFFSET, patched.offset))
        .insert_header((UPLOAD_EXPIRES, http_date(patched.expires_at)))
        .finish()
}

/// `DELETE /tus/{id}` (termination): the upload and its bytes go, its quota comes back.
#[utoipa::path(delete, path = "/tus/{id}", tag = "resumable", security(("token" = [])),
    params(("id" = Uuid, Path), ("Tus-Resumable" = inline(TusResumable), Header)),
    responses(
        (status = 204, description = "terminated"),
        OnAnUpload, NotFound, Authenticated,
    ))]
async fn terminate(
    req: HttpRequest,
    state: web::Data<AppState>,
    owner: Owner,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    protocol::check_version(req.headers())?;
    let id = id.into_inner();
    let leased = lease(&state, id, owner).await?;
    let leased = match leased {
        Ok(leased) => leased,
        // An expired upload is as good as terminated.
        Err(Refused::Expired) => return Ok(resumable(&mut HttpResponse::NoContent()).finish()),
        Err(refused) => return Err(refused.into()),
    };
    sweep::remove(
        &state.pool,
        &state.storage,
        leased.id,
        leased.lease,
        leased.multipart_id.as_deref(),
    )
    .await?;
    Ok(resumable(&mut HttpResponse::NoContent()).finish())
}

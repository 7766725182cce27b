//! Resumable uploads: tus 1.0 (https://tus.io/protocols/resumable-upload) under `/tus/`, with
//! the extensions creation, creation-with-upload, creation-defer-length, termination,
//! checksum, expiration and (on disk) concatenation.
//!
//! An upload's state lives in Postgres (`record`), so that any instance continues it: a PATCH
//! takes the upload's lease, appends to storage, and records the new offset with the SHA-256
//! state. The upload's id is the id of the file it becomes: `/tus/{id}` turns into
//! `/files/{id}` when its last byte is stored.

mod concat;
mod holding;
mod protocol;
mod receive;
mod upload;

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError, guard,
    http::{Method, header},
    middleware::from_fn,
    web,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use self::{
    concat::Concat,
    protocol::{
        CHECKSUM_ALGORITHMS, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_VERSION,
        UPLOAD_EXPIRES, VERSION, http_date, resumable,
    },
};
use crate::{
    access::{
        auth::{self, Owner},
        quota::{self, Reservation},
    },
    api::openapi::{Documented, responses::Authenticated},
    base::{configuration::TusSettings, error::ApiError, problem::Problem},
    catalog::record::{FileRecord, NewFile},
    ingest::{self, Ingest, content_type::Detector, filename},
    resumable::{
        record::{self, NewUpload, Refused},
        writers,
    },
};

/// The tus area's own state; what it shares with multipart uploads is `ingest`.
pub struct Tus {
    pub ingest: web::Data<Ingest>,
    pub settings: TusSettings,
    /// The resumable uploads being written here.
    pub writers: Arc<writers::Writers>,
}

/// Where uploads are created (`POST`, with their first bytes if the client sends them).
pub const CREATION: [&str; 2] = ["/tus", "/tus/"];
/// Where an upload's bytes go (`PATCH`).
pub const UPLOAD: &str = "/tus/{id}";

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/tus/",
            web::resource(CREATION)
                .guard(guard::Options())
                .route(web::route().to(options))
                .wrap(from_fn(protocol::tag)),
        )
        .with(__path_options),
    )
    .service(
        Documented::new(
            "/tus/",
            web::resource(CREATION)
                .route(web::post().to(create))
                .wrap(from_fn(auth::identify))
                .wrap(from_fn(protocol::tag)),
        )
        .with(__path_create),
    )
    .service(
        Documented::new(
            UPLOAD,
            web::resource(UPLOAD)
                .route(web::head().to(upload::head))
                .route(web::patch().to(upload::patch))
                .route(web::delete().to(upload::terminate))
                // tus 1.0: `POST` with `X-HTTP-Method-Override`, for clients that cannot send
                // `PATCH` or `DELETE`.
                .route(overridden("PATCH").to(upload::patch))
                .route(overridden("DELETE").to(upload::terminate))
                .route(web::method(Method::OPTIONS).to(options))
                .wrap(from_fn(auth::identify))
                .wrap(from_fn(protocol::tag)),
        )
        .with(upload::__path_head)
        .with(upload::__path_patch)
        .with(upload::__path_terminate),
    );
}

/// A `POST` that asks to be taken as `method`.
fn overridden(method: &'static str) -> actix_web::Route {
    web::post().guard(guard::Header("x-http-method-override", method))
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
async fn options(tus: web::Data<Tus>) -> HttpResponse {
    resumable(&mut HttpResponse::NoContent())
        .insert_header((TUS_VERSION, VERSION))
        .insert_header((TUS_EXTENSION, protocol::extensions(&tus.ingest.storage)))
        .insert_header((TUS_MAX_SIZE, tus.ingest.limits.settings.max_file_bytes))
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
        (status = 201, description = "created; `Location` is where to PATCH. An upload of \
            `Upload-Length: 0` is a file at once: `Content-Location` says where",
            headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String),
                ("Content-Location" = Option<String>))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: a header is missing or not valid; a final \
                upload (`Upload-Concat: final;…`) names an upload that is not a whole partial \
                upload of the caller's; or `Upload-Concat` on S3, which does not concatenate"),
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
    tus: web::Data<Tus>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    // Parallel uploads: partial uploads, then a final one that concatenates them (`concat`).
    let partial = match concat::requested(headers, &tus)? {
        Some(Concat::Final(parts)) => return concat::create_final(&tus, &req, owner, parts).await,
        Some(Concat::Partial) => true,
        None => false,
    };
    let length = protocol::creation_length(headers)?;
    let max = tus.ingest.limits.settings.max_file_bytes;
    if length.is_some_and(|length| length > max) {
        return Err(ApiError::FileTooLarge(max));
    }
    let with_data = protocol::is_offset_octet_stream(headers);
    if !with_data && crate::api::declared_length(headers).is_some_and(|body| body > 0) {
        return Err(ApiError::NotOffsetOctetStream);
    }
    let _slot = match with_data {
        true => tus.ingest.slots.take(&req)?,
        false => None,
    };
    let metadata = protocol::metadata(headers)?;
    let declared_type = metadata
        .filetype
        .as_deref()
        .and_then(|filetype| filetype.parse::<mime::Mime>().ok());
    // A declared type that is not allowed is refused before a byte is sent.
    let detector = Detector::new(declared_type.as_ref(), &tus.ingest.limits.allow)?;
    let upload = NewUpload {
        id: Uuid::now_v7(),
        owner: owner.user_id,
        length,
        metadata: metadata.raw,
        filename: filename::sanitize(metadata.filename.as_deref().unwrap_or_default()),
        declared_type: declared_type.map(|declared| declared.to_string()),
        multipart_id: None,
        expires_at: OffsetDateTime::now_utc() + tus.settings.expiry(),
        partial,
    };
    if length == Some(0) && !partial {
        let file = store_empty(&tus, upload, detector, payload).await?;
        let mut created = HttpResponse::Created();
        created.insert_header((header::LOCATION, format!("/tus/{}", file.id)));
        return Ok(upload::finished(&mut created, &file));
    }
    let upload = start(&tus, upload).await?;
    let location = format!("/tus/{}", upload.id);
    let mut created = HttpResponse::Created();
    resumable(&mut created).insert_header((header::LOCATION, location.as_str()));
    if !with_data {
        return Ok(created
            .insert_header((UPLOAD_EXPIRES, http_date(upload.expires_at)))
            .finish());
    }
    let leased = lease(&tus, upload.id, owner).await??;
    match receive::patch(&tus, &req, payload, leased, 0).await {
        Ok(patched) => Ok(upload::answer_patch(&mut created, &patched)),
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

/// An upload of no bytes is a file at once (tus clients send no `PATCH` for it): stored with its
/// row, like any small file, on either backend.
async fn store_empty(
    tus: &Tus,
    upload: NewUpload,
    detector: Detector,
    mut payload: web::Payload,
) -> Result<FileRecord, ApiError> {
    if sends_bytes(&mut payload).await {
        return Err(ApiError::BeyondLength(0));
    }
    let content_type = detector.content_type();
    tus.ingest.limits.allow.check(&content_type)?;
    let file = NewFile {
        id: upload.id,
        filename: upload.filename,
        content_type,
        size: 0,
        sha256: Sha256::digest(b"").into(),
        inline: Some(Vec::new()),
    };
    let ingest = &tus.ingest;
    let reservation =
        Reservation::begin(&ingest.quota, upload.owner, ingest.storage.instance(), None).await?;
    let mut stored = ingest::commit(
        ingest,
        upload.owner,
        reservation,
        vec![file],
        Vec::new(),
        "tus",
    )
    .await?;
    tracing::info!(id = %upload.id, "empty resumable upload stored");
    Ok(stored.remove(0))
}

/// Whether a body that should be empty brings bytes (read as far as its first chunk).
async fn sends_bytes(payload: &mut web::Payload) -> bool {
    match payload.next().await {
        Some(Ok(chunk)) => !chunk.is_empty(),
        _ => false,
    }
}

/// Reserves the upload's quota, prepares its storage and records it, unless its owner holds as
/// many unfinished uploads as they may; undoes what was done if a step fails.
async fn start(tus: &Tus, mut upload: NewUpload) -> Result<NewUpload, ApiError> {
    let max = tus.settings.max_unfinished_per_user;
    // A first look, so that a flood of creations beyond the cap costs the bucket nothing.
    if max > 0 {
        let mut conn = tus.ingest.pool.acquire().await?;
        refuse_beyond(&mut conn, upload.owner, max).await?;
    }
    let mut reservation = Reservation::resume(&tus.ingest.quota, upload.id, upload.owner, 0, 0);
    if let Some(length) = upload.length {
        reservation.reserve_total(length).await?;
    }
    let recorded = async {
        upload.multipart_id = tus.ingest.storage.start_resumable(upload.id).await?;
        // The look that counts: creations of one owner wait for each other here, so that
        // together they cannot pass the cap (and no connection waits on the bucket meanwhile).
        let mut tx = tus.ingest.pool.begin().await?;
        if max > 0 {
            record::lock_creations(&mut tx, upload.owner).await?;
            refuse_beyond(&mut tx, upload.owner, max).await?;
        }
        record::create(&mut tx, &upload).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = recorded {
        let id = upload.id;
        if let Err(error) = quota::release(tus.ingest.quota.pool(), id).await {
            tracing::warn!(%id, %error, "could not give back a failed creation's quota reservation");
        }
        let multipart = upload.multipart_id.as_deref();
        if let Err(error) = tus.ingest.storage.discard_resumable(id, multipart).await {
            tracing::warn!(%id, %error, "could not remove a failed creation's storage");
        }
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

/// `429 too_many_unfinished_uploads` when `owner` holds `max` unfinished uploads, with the
/// seconds until the first of them expires.
async fn refuse_beyond(conn: &mut PgConnection, owner: i64, max: u64) -> Result<(), ApiError> {
    let unfinished = record::unfinished(conn, owner).await?;
    if unfinished.count < max as i64 {
        return Ok(());
    }
    let until = unfinished.earliest_expiry - OffsetDateTime::now_utc();
    Err(ApiError::TooManyUnfinished {
        max,
        retry_after: until.whole_seconds().max(1) as u64,
    })
}

/// Waits after asking the request that holds an upload's lease to let go: it records what it
/// has received first.
const RELEASE_WAITS_MS: [u64; 7] = [50, 100, 200, 400, 800, 1600, 2000];

/// Takes the upload's lease for this request. A request that holds it (on any instance) is
/// asked to stop, as tusd does: the client has come back, most likely because the connection
/// of that request died without a word.
async fn lease(
    tus: &Tus,
    id: Uuid,
    owner: Owner,
) -> Result<Result<record::Leased, Refused>, sqlx::Error> {
    let instance = tus.ingest.storage.instance();
    let mut taken = record::take_lease(&tus.ingest.pool, id, owner.user_id, instance).await?;
    if let Err(Refused::Locked(Some(holder))) = taken {
        writers::ask_release(&tus.writers, &tus.ingest.pool, instance, holder, id).await?;
        for wait in RELEASE_WAITS_MS {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            taken = record::take_lease(&tus.ingest.pool, id, owner.user_id, instance).await?;
            if !matches!(taken, Err(Refused::Locked(_))) {
                break;
            }
        }
    }
    Ok(taken)
}

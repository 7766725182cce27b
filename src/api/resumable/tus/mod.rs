//! tus 1.0 (https://tus.io/protocols/resumable-upload) under `/tus/`, with the extensions
//! creation, creation-with-upload, creation-defer-length, termination, checksum, expiration and
//! concatenation (on disk, and in a bucket that copies parts): this protocol's headers on the
//! area's resumable core.

mod concat;
mod protocol;
mod upload;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError, guard,
    http::{Method, header},
    middleware::from_fn,
    web,
};
use time::OffsetDateTime;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use self::{
    concat::Concat,
    protocol::{
        CHECKSUM_ALGORITHMS, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_VERSION,
        UPLOAD_EXPIRES, VERSION, http_date,
    },
};
use super::{
    Resumable,
    creation::{admit, start, store_empty},
    fields::{self, no_store},
    holding::lease,
    receive,
};
use crate::{
    access::auth::{self, Owner},
    api::openapi::{
        Documented,
        responses::{Authenticated, NotFound},
    },
    base::{error::ApiError, problem::Problem},
    catalog::upload_links::UploadLink,
    ingest::{content_type::Detector, filename, upload_link},
    resumable::record::NewUpload,
};

/// The protocol's name in the metrics.
const PROTOCOL: &str = "tus";

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
                .wrap(from_fn(auth::identify_or_link))
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
                .wrap(from_fn(auth::identify_or_link))
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
async fn options(tus: web::Data<Resumable>) -> HttpResponse {
    no_store(&mut HttpResponse::NoContent())
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
        ("Upload-Metadata" = Option<String>, Header, description = "`filename`, `filetype`, `expires_in` (the file's lifetime, `7d`): key and base64 value pairs, comma-separated"),
        ("Upload-Link" = Option<String>, Header, description = "instead of a token: the secret of an upload link (`/send/{secret}`); the upload is the link's creator's, within the link's limits"),
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
                upload of the caller's; or `Upload-Concat` on a bucket without part copies \
                (`storage.s3.copy_parts`)"),
        (status = 412, body = Problem, content_type = "application/problem+json",
            description = "`tus_version_unsupported`", headers(("Tus-Version" = String))),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`file_too_large`, `quota_exceeded` or `length_exceeded`"),
        (status = 415, body = Problem, content_type = "application/problem+json",
            description = "`unsupported_media_type` (`filetype` not allowed) or `not_offset_octet_stream`"),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "`link_expired` or `link_used_up`: the `Upload-Link` takes no more"),
        Authenticated, NotFound,
    ))]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    tus: web::Data<Resumable>,
    owner: Owner,
    link: Option<web::ReqData<UploadLink>>,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    let link = link.map(web::ReqData::into_inner);
    // Parallel uploads: partial uploads, then a final one that concatenates them (`concat`).
    let partial = match concat::requested(headers, &tus)? {
        Some(_) if link.is_some() => {
            return Err(ApiError::InvalidRequest(
                "`Upload-Concat` is not taken through an upload link: send the file as one upload"
                    .into(),
            ));
        }
        Some(Concat::Final(parts)) => return concat::create_final(&tus, &req, owner, parts).await,
        Some(Concat::Partial) => true,
        None => false,
    };
    if let Some(link) = &link {
        upload_link::has_room(link)?;
    }
    let length = protocol::creation_length(headers)?;
    let max = upload_link::max_file_bytes(&tus.ingest.limits, link.as_ref());
    if length.is_some_and(|length| length > max) {
        return Err(ApiError::FileTooLarge(max));
    }
    let with_data = protocol::is_offset_octet_stream(headers);
    if !with_data && crate::api::declared_length(headers).is_some_and(|body| body > 0) {
        return Err(ApiError::NotOffsetOctetStream);
    }
    let append = upload::appending(headers, 0)?;
    let _slot = match with_data {
        true => tus.ingest.slots.take(&req)?,
        false => None,
    };
    let metadata = fields::metadata(headers)?;
    let lifetime = metadata.lifetime(&tus.ingest.limits.settings)?;
    let declared_type = metadata
        .filetype
        .as_deref()
        .and_then(|filetype| filetype.parse::<mime::Mime>().ok());
    // A declared type that is not allowed is refused before a byte is sent.
    let allow = upload_link::allow(&tus.ingest.limits, link.as_ref());
    let detector = Detector::new(declared_type.as_ref(), &allow)?;
    let mut upload = NewUpload {
        id: Uuid::now_v7(),
        owner: owner.user_id,
        length,
        metadata: metadata.raw.clone(),
        filename: filename::sanitize(metadata.filename.as_deref().unwrap_or_default()),
        declared_type: declared_type.map(|declared| declared.to_string()),
        multipart_id: None,
        expires_at: OffsetDateTime::now_utc() + tus.settings.expiry(),
        partial,
        ends_at_length: true,
        upload_link: link.as_ref().map(|link| link.id),
        lifetime,
        file_metadata: None,
    };
    upload.file_metadata = admit(&tus, &upload, metadata, PROTOCOL).await?;
    if length == Some(0) && !partial {
        let file = store_empty(&tus, upload, detector, payload, PROTOCOL).await?;
        let mut created = HttpResponse::Created();
        created.insert_header((header::LOCATION, format!("/tus/{}", file.id)));
        return Ok(upload::finished(&mut created, &file));
    }
    let upload = start(&tus, upload).await?;
    let location = format!("/tus/{}", upload.id);
    let mut created = HttpResponse::Created();
    no_store(&mut created).insert_header((header::LOCATION, location.as_str()));
    if !with_data {
        return Ok(created
            .insert_header((UPLOAD_EXPIRES, http_date(upload.expires_at)))
            .finish());
    }
    let leased = lease(&tus, upload.id, owner).await??;
    match receive::patch(&tus, payload, leased, append).await {
        Ok(patched) => Ok(upload::answer_patch(&mut created, &patched)),
        Err(error) => Ok(fields::located(error.error_response(), &location)),
    }
}

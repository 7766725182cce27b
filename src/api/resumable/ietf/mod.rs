//! The IETF's Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload, interop version
//! 8) under `/resumable/`: this protocol's fields on the area's resumable core.
//!
//! `POST /resumable/` with `Upload-Complete` creates an upload (with all, some or none of its
//! bytes); `/resumable/{id}` is the upload resource: `HEAD` for its offset, `PATCH`
//! (`application/partial-upload`) to append, `DELETE` to cancel. The upload is whole when a
//! request with `Upload-Complete: ?1` has brought its last byte; the answer is then the file
//! (`201`, its object, `Location: /files/{id}`), as a one-request upload would have had it.
//!
//! The draft's `104 (Upload Resumption Supported)` interim response is not sent: actix-web
//! writes no informational response but `100 Continue`. A client learns the upload's URL from
//! the final answer of a creation, or creates it without content first (the draft's "careful
//! upload creation"), as tus-js-client does.

mod protocol;
mod upload;

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder, guard,
    http::header::{self, ContentDisposition, HeaderMap},
    middleware::from_fn,
    web,
};
use time::OffsetDateTime;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use self::protocol::{UPLOAD_COMPLETE, UPLOAD_LIMIT, boolean, limit};
use super::{
    Resumable,
    creation::{admit, start, store_empty},
    fields::{self, UPLOAD_LENGTH, UPLOAD_OFFSET, no_store},
    holding::lease,
    receive::{self, Append, Patched},
};
use crate::{
    access::auth::{self, Owner},
    api::{
        declared_length,
        openapi::{Documented, responses::Authenticated},
    },
    base::{error::ApiError, problem::Problem},
    catalog::record::{FileObject, FileRecord},
    ingest::{content_type::Detector, filename},
    resumable::record::NewUpload,
};

/// The protocol's name in the metrics.
const PROTOCOL: &str = "ietf";

/// Where uploads are created.
pub const CREATION: [&str; 2] = ["/resumable", "/resumable/"];
/// The upload resource.
pub const UPLOAD: &str = "/resumable/{id}";

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            "/resumable/",
            web::resource(CREATION)
                .guard(guard::Options())
                .route(web::route().to(options)),
        )
        .with(__path_options),
    )
    .service(
        Documented::new(
            "/resumable/",
            web::resource(CREATION)
                .route(web::post().to(create))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_create),
    )
    .service(
        Documented::new(
            UPLOAD,
            web::resource(UPLOAD)
                .route(web::head().to(upload::retrieve))
                .route(web::patch().to(upload::append))
                .route(web::delete().to(upload::cancel))
                .wrap(from_fn(auth::identify)),
        )
        .with(upload::__path_retrieve)
        .with(upload::__path_append)
        .with(upload::__path_cancel),
    );
}

/// The limits a new upload gets: the largest file, and the lifetime its every request renews.
fn creation_limit(resumable: &Resumable) -> String {
    let max_age = resumable.settings.expiry().as_secs() as i64;
    limit(
        resumable.ingest.limits.settings.max_file_bytes,
        Some(max_age),
    )
}

/// What the server supports (feature detection); no token needed.
#[utoipa::path(options, path = "/resumable/", tag = "resumable", operation_id = "resumable_options",
    responses((status = 204, description = "resumable uploads are supported, within these limits",
        headers(("Upload-Limit" = String, description = "`max-size=<bytes>, max-age=<seconds>`")))))]
async fn options(resumable: web::Data<Resumable>) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((UPLOAD_LIMIT, creation_limit(&resumable)))
        .insert_header((header::ALLOW, "OPTIONS, POST"))
        .finish()
}

/// `POST /resumable/`: a new upload, with as much of the file as the client sends.
#[utoipa::path(post, path = "/resumable/", tag = "resumable", operation_id = "resumable_create",
    security(("token" = [])),
    params(
        ("Upload-Complete" = String, Header, pattern = r"^\?[01]$",
            description = "`?1`: the body is the whole file; `?0`: more is to come (appended \
            with PATCH)"),
        ("Upload-Length" = Option<u64>, Header, nullable = false,
            description = "the file's size, when known"),
        ("Upload-Draft-Interop-Version" = Option<u64>, Header, nullable = false, minimum = 6,
            maximum = 8,
            description = "the draft's interop version: 8 (6 and 7 are accepted)"),
        ("Content-Disposition" = Option<String>, Header, nullable = false, description = "`inline; filename=…`: the file's name"),
    ),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "the file's first bytes, or all of them; its `Content-Type` is the file's"),
    responses(
        (status = 200, body = FileObject, description = "`Upload-Complete: ?1` and the body \
            was the whole file: the file, at `Location` (`/files/{id}`)",
            headers(("Location" = String), ("Upload-Complete" = String), ("Upload-Offset" = u64))),
        (status = 201, description = "`Upload-Complete: ?0`: the upload, at `Location` \
            (`/resumable/{id}`), to append to",
            headers(("Location" = String), ("Upload-Complete" = String), ("Upload-Offset" = u64),
                ("Upload-Limit" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_request`: `Upload-Complete` missing, a length that \
                contradicts another, an interop version not spoken"),
        (status = 413, body = Problem, content_type = "application/problem+json",
            description = "`file_too_large`, `quota_exceeded` or `length_exceeded`"),
        (status = 415, body = Problem, content_type = "application/problem+json",
            description = "`unsupported_media_type`"),
        Authenticated,
    ))]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    resumable: web::Data<Resumable>,
    owner: Owner,
) -> HttpResponse {
    let created = create_upload(&req, payload, &resumable, owner).await;
    answered(&resumable, created)
}

/// A request's answer, or its refusal in the draft's terms.
fn answered(resumable: &Resumable, outcome: Result<HttpResponse, ApiError>) -> HttpResponse {
    outcome.unwrap_or_else(|error| protocol::refusal(&error, &creation_limit(resumable)))
}

async fn create_upload(
    req: &HttpRequest,
    payload: web::Payload,
    resumable: &Resumable,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let headers = req.headers();
    protocol::check_version(headers)?;
    let last = protocol::required_complete(headers)?;
    let body = declared_length(headers);
    let declared = fields::number(headers, &UPLOAD_LENGTH)?;
    let length = receive::whole_length(declared, last, body, 0)?;
    let max = resumable.ingest.limits.settings.max_file_bytes;
    if length.is_some_and(|length| length > max) {
        return Err(ApiError::FileTooLarge(max));
    }
    let _slot = match body {
        Some(0) => None,
        _ => resumable.ingest.slots.take(req)?,
    };
    let metadata = fields::metadata(headers)?;
    let lifetime = metadata.lifetime(&resumable.ingest.limits.settings)?;
    let declared_type = declared_type(headers).or_else(|| {
        let filetype = metadata.filetype.as_deref()?;
        filetype.parse::<mime::Mime>().ok()
    });
    // A declared type that is not allowed is refused before a byte is sent.
    let detector = Detector::new(declared_type.as_ref(), &resumable.ingest.limits.allow)?;
    // The draft's way to name the file, else tus-js-client's `Upload-Metadata`.
    let disposition = req
        .get_header::<ContentDisposition>()
        .filter(|cd| cd.get_filename().is_some() || cd.get_filename_ext().is_some());
    let filename = match disposition {
        Some(disposition) => filename::from_disposition(Some(&disposition)),
        None => filename::sanitize(metadata.filename.as_deref().unwrap_or_default()),
    };
    let mut upload = NewUpload {
        id: Uuid::now_v7(),
        owner: owner.user_id,
        length,
        metadata: metadata.raw.clone(),
        filename,
        declared_type: declared_type.map(|declared| declared.to_string()),
        multipart_id: None,
        expires_at: OffsetDateTime::now_utc() + resumable.settings.expiry(),
        partial: false,
        ends_at_length: false,
        upload_link: None,
        lifetime,
        file_metadata: None,
    };
    upload.file_metadata = admit(resumable, &upload, metadata, PROTOCOL).await?;
    if last && length == Some(0) {
        let file = store_empty(resumable, upload, detector, payload, PROTOCOL).await?;
        return Ok(completed(&file));
    }
    let upload = start(resumable, upload).await?;
    let location = format!("/resumable/{}", upload.id);
    if !last && body == Some(0) {
        let patched = Patched {
            offset: 0,
            expires_at: upload.expires_at,
            file: None,
        };
        let mut created = HttpResponse::Created();
        created.insert_header((header::LOCATION, location.as_str()));
        return Ok(answer(&mut created, &patched, resumable));
    }
    let leased = lease(resumable, upload.id, owner).await??;
    let append = Append {
        offset: 0,
        length,
        body,
        checksum: None,
        last,
        protocol: PROTOCOL,
    };
    match receive::patch(resumable, payload, leased, append).await {
        Ok(patched) => {
            let mut created = HttpResponse::Created();
            created.insert_header((header::LOCATION, location.as_str()));
            Ok(answer(&mut created, &patched, resumable))
        }
        Err(error) => Ok(fields::located(
            protocol::refusal(&error, &creation_limit(resumable)),
            &location,
        )),
    }
}

/// The type of the file a creation declares (`Content-Type`), unless it names none: the
/// draft's `application/partial-upload` (which tus-js-client sends) or a bare octet stream.
fn declared_type(headers: &HeaderMap) -> Option<mime::Mime> {
    let essence = fields::essence(headers)?;
    if essence.eq_ignore_ascii_case(protocol::PARTIAL_UPLOAD)
        || essence.eq_ignore_ascii_case(mime::APPLICATION_OCTET_STREAM.essence_str())
    {
        return None;
    }
    headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The answer to a request that brought bytes: the file, if they made the upload whole; else
/// how far it is, with its limits.
fn answer(
    builder: &mut HttpResponseBuilder,
    patched: &Patched,
    resumable: &Resumable,
) -> HttpResponse {
    if let Some(file) = &patched.file {
        return completed(file);
    }
    let max_age = (patched.expires_at - OffsetDateTime::now_utc()).whole_seconds();
    let max_size = resumable.ingest.limits.settings.max_file_bytes;
    no_store(builder)
        .insert_header((UPLOAD_COMPLETE, boolean(false)))
        .insert_header((UPLOAD_OFFSET, patched.offset))
        .insert_header((UPLOAD_LIMIT, limit(max_size, Some(max_age))))
        .finish()
}

/// The answer of a whole upload: the file, as `POST /upload` gives it, marked complete.
fn completed(file: &FileRecord) -> HttpResponse {
    no_store(&mut HttpResponse::Ok())
        .insert_header((header::LOCATION, file.location()))
        .insert_header((header::CONTENT_LOCATION, file.location()))
        .insert_header((UPLOAD_COMPLETE, boolean(true)))
        .insert_header((UPLOAD_OFFSET, file.size))
        .json(file.to_object())
}

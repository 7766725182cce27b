//! `POST /upload` (one part named `file`) and `POST /files` (a batch, all or nothing).

mod digest;
mod form;
mod links;

use actix_web::{HttpRequest, HttpResponse, guard, http::header, middleware::from_fn, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use self::form::{Form, ReceivedFile, is_file};
use crate::{
    access::{
        auth::{self, Owner},
        quota::Reservation,
        upload_slots::Slot,
    },
    api::{
        lifetimes,
        openapi::{
            Documented,
            responses::{Authenticated, UploadRefused},
        },
    },
    base::{error::ApiError, error_code::FieldError, in_flight},
    catalog::{
        record::{FileObject, FileRecord},
        upload_links::UploadLink,
    },
    ingest::{self, Ingest},
};

/// `POST` on these brings a file's bytes.
pub const PATHS: [&str; 3] = ["/upload", "/files", SEND];

/// An upload link's URL: `POST` uploads through it; `GET` says what it takes (JSON), or is the
/// page for a browser (the page area's).
pub const SEND: &str = "/send/{secret}";

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        Documented::new(
            PATHS[0],
            web::resource(PATHS[0])
                .route(web::post().to(upload))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_upload),
    )
    // Only POST: the other methods of `/files` fall through to the files module's resource.
    .service(
        Documented::new(
            PATHS[1],
            web::resource(PATHS[1])
                .guard(guard::Post())
                .route(web::post().to(upload_batch))
                .wrap(from_fn(auth::identify)),
        )
        .with(__path_upload_batch),
    )
    .service(
        Documented::new(
            "/upload-links",
            web::resource("/upload-links")
                .route(web::post().to(links::create))
                .route(web::get().to(links::list))
                .wrap(from_fn(auth::identify)),
        )
        .with(links::__path_create)
        .with(links::__path_list),
    )
    .service(
        Documented::new(
            "/upload-links/{id}",
            web::resource("/upload-links/{id}")
                .route(web::delete().to(links::revoke))
                .wrap(from_fn(auth::identify)),
        )
        .with(links::__path_revoke),
    )
    // A `GET` that does not ask for JSON falls through to the page.
    .service(
        Documented::new(
            SEND,
            web::resource(SEND)
                .guard(guard::Any(guard::Post()).or(guard::fn_guard(asks_for_json)))
                .route(web::post().to(links::upload))
                .route(web::get().to(links::limits))
                .wrap(from_fn(auth::identify_or_link)),
        )
        .with(links::__path_limits)
        .with(links::__path_upload),
    );
}

/// A `GET` whose `Accept` names JSON.
fn asks_for_json(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head().method == actix_web::http::Method::GET
        && ctx
            .head()
            .headers()
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("application/json"))
}

/// `POST /upload`'s form, as the document describes it.
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    /// How long the file lives, 1 to 4 digits and `s`, `m`, `h`, `d` or
    /// `w` (`7d`), at most `upload.max_lifetime_secs`; absent: `upload.default_lifetime_secs`.
    #[schema(
        example = "7d",
        pattern = r"^[1-9][0-9]{0,3}[smhdw]$",
        nullable = false
    )]
    pub expires_in: Option<String>,
    /// The file; its part's `filename` becomes the file's name (cleaned). A `Content-SHA256`
    /// or `Digest` part header is checked against the bytes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /files`' form: every part with a filename is a file.
#[derive(utoipa::ToSchema)]
pub struct BatchForm {
    /// The files' lifetime, as in `POST /upload`.
    #[schema(
        example = "7d",
        pattern = r"^[1-9][0-9]{0,3}[smhdw]$",
        nullable = false
    )]
    pub expires_in: Option<String>,
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub files: Vec<Vec<u8>>,
}

/// Upload one file.
///
/// The tutorial's endpoint: exactly one file part, named `file`; other fields are ignored. The
/// file is streamed to storage; `201` means it is durable and recorded.
#[utoipa::path(post, path = "/upload", tag = "files", security(("token" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = FileObject, description = "stored",
            headers(("Location" = String, description = "the file's metadata"))),
        UploadRefused, Authenticated,
    ))]
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let received = receive(&req, payload, &ingest, owner, Expect::One, None).await?;
    let stored = commit(&ingest, owner, received).await?;
    let record = &stored[0];
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, record.location()))
        .json(record.to_object()))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Batch {
    files: Vec<FileObject>,
}

/// Upload several files, all or none.
///
/// Every part that names a file (has a `filename`) is stored; either all of them are, or none.
#[utoipa::path(post, path = "/files", tag = "files", security(("token" = [])),
    request_body(content = BatchForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = Batch, description = "all stored"),
        UploadRefused, Authenticated,
    ))]
async fn upload_batch(
    req: HttpRequest,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let received = receive(&req, payload, &ingest, owner, Expect::Many, None).await?;
    let stored = commit(&ingest, owner, received).await?;
    Ok(batch(&stored))
}

/// `201` with the files stored.
fn batch(stored: &[FileRecord]) -> HttpResponse {
    HttpResponse::Created().json(Batch {
        files: stored.iter().map(FileRecord::to_object).collect(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One part named `file`.
    One,
    /// Any number of parts that name a file.
    Many,
}

/// The files of one request, on disk, the quota they hold, and the caller's upload slot, held
/// until their commit.
struct Received {
    files: Vec<ReceivedFile>,
    reservation: Reservation,
    _slot: Option<Slot>,
}

/// Reads the whole form, streaming the expected file parts to storage and skipping the rest;
/// within the limits of upload link `link` when the files come through one.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    ingest: &Ingest,
    owner: Owner,
    expect: Expect,
    link: Option<&UploadLink>,
) -> Result<Received, ApiError> {
    let slot = ingest.slots.take(req)?;
    let in_flight = std::sync::Arc::new(ingest.in_flight.enter());
    let mut form = Form::new(req, payload, &ingest.limits, link)?;
    let mut reservation = Reservation::begin(
        &ingest.quota,
        owner.user_id,
        ingest.storage.instance(),
        form.declared_length(),
    )
    .await?;
    let files = receive_files(
        &mut form,
        ingest,
        owner,
        &mut reservation,
        expect,
        &in_flight,
    );
    match files.await {
        Ok(files) => Ok(Received {
            files,
            reservation,
            _slot: slot,
        }),
        Err(error) => {
            reservation.release().await;
            Err(error)
        }
    }
}

async fn receive_files(
    form: &mut Form<'_>,
    ingest: &Ingest,
    owner: Owner,
    reservation: &mut Reservation,
    expect: Expect,
    in_flight: &in_flight::Shared,
) -> Result<Vec<ReceivedFile>, ApiError> {
    let mut files = Vec::new();
    // `Some` once the form's `expires_in` is read.
    let mut lifetime = None;
    while let Some(mut field) = form.next_part().await? {
        if field.name() == Some(EXPIRES_IN) && !is_file(&field) {
            lifetime = Some(read_lifetime(form, &mut field, ingest, lifetime).await?);
            continue;
        }
        let wanted = match expect {
            Expect::One => field.name() == Some("file"),
            Expect::Many => is_file(&field),
        };
        if !wanted {
            form.skip(&mut field).await?;
            continue;
        }
        if expect == Expect::One && !files.is_empty() {
            return Err(ApiError::TooManyFiles(
                "only one part named `file` is accepted; use POST /files for several".into(),
            ));
        }
        let metadata = form
            .admit(&field, ingest.hook.as_ref(), owner.user_id)
            .await?;
        let mut received = form
            .receive(&mut field, &ingest.storage, reservation, in_flight)
            .await?;
        received.file.metadata = metadata;
        files.push(received);
    }
    if files.is_empty() {
        return Err(ApiError::MissingFile(match expect {
            Expect::One => "the form has no file part named `file`",
            Expect::Many => "the form has no file part",
        }));
    }
    let lifetime = match lifetime {
        Some(asked) => asked,
        None => lifetimes::of_upload(None, &ingest.limits.settings).map_err(invalid)?,
    };
    for file in &mut files {
        file.file.lifetime = lifetime;
    }
    Ok(files)
}

/// The form field that asks for a lifetime, for all the files of the form (anywhere in it:
/// the files are committed once the whole form is read).
const EXPIRES_IN: &str = "expires_in";

/// The lifetime the form's `expires_in` field asks for, in seconds (`None`: until deleted);
/// `422` unless it is one lifetime within the bound, and the form's only one.
async fn read_lifetime(
    form: &Form<'_>,
    field: &mut actix_multipart::Field,
    ingest: &Ingest,
    earlier: Option<Option<i64>>,
) -> Result<Option<i64>, ApiError> {
    let refuse = |why: &str| invalid(FieldError::new(EXPIRES_IN, why));
    let text = form.text(field, 16).await?;
    if earlier.is_some() {
        return Err(refuse("appears twice"));
    }
    let text =
        text.ok_or_else(|| refuse("is not a lifetime such as `30m`, `12h`, `7d` or `2w`"))?;
    lifetimes::of_upload(Some(text.trim()), &ingest.limits.settings).map_err(invalid)
}

fn invalid(error: FieldError) -> ApiError {
    ApiError::Validation(vec![error])
}

/// Writes the rows for the files of one request, already durable in storage.
async fn commit(
    ingest: &Ingest,
    owner: Owner,
    received: Received,
) -> Result<Vec<FileRecord>, ApiError> {
    let Received {
        files,
        reservation,
        _slot,
    } = received;
    let (rows, entries): (Vec<_>, Vec<_>) = files.into_iter().map(|f| (f.file, f.entry)).unzip();
    let entries = entries.into_iter().flatten().collect();
    ingest::commit(ingest, owner.user_id, reservation, rows, entries).await
}

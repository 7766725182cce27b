//! `POST /upload` (one part named `file`) and `POST /files` (a batch, all or nothing).

mod digest;
mod form;

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
    api::openapi::{
        Documented,
        responses::{Authenticated, UploadRefused},
    },
    base::{error::ApiError, in_flight},
    catalog::record::{FileObject, FileRecord},
    ingest::{self, Ingest},
};

/// `POST` on these brings a file's bytes.
pub const PATHS: [&str; 2] = ["/upload", "/files"];

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
    );
}

/// `POST /upload`'s form, as the document describes it.
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    /// The file; its part's `filename` becomes the file's name (cleaned). A `Content-SHA256`
    /// or `Digest` part header is checked against the bytes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /files`' form: every part with a filename is a file.
#[derive(utoipa::ToSchema)]
pub struct BatchForm {
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
    let received = receive(&req, payload, &ingest, owner, Expect::One).await?;
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
    let received = receive(&req, payload, &ingest, owner, Expect::Many).await?;
    let stored = commit(&ingest, owner, received).await?;
    Ok(HttpResponse::Created().json(Batch {
        files: stored.iter().map(FileRecord::to_object).collect(),
    }))
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

/// Reads the whole form, streaming the expected file parts to storage and skipping the rest.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    ingest: &Ingest,
    owner: Owner,
    expect: Expect,
) -> Result<Received, ApiError> {
    let slot = ingest.slots.take(req)?;
    let in_flight = std::sync::Arc::new(ingest.in_flight.enter());
    let mut form = Form::new(req, payload, &ingest.limits)?;
    let mut reservation = Reservation::begin(
        &ingest.quota,
        owner.user_id,
        ingest.storage.instance(),
        form.declared_length(),
    )
    .await?;
    match receive_files(&mut form, ingest, &mut reservation, expect, &in_flight).await {
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
    reservation: &mut Reservation,
    expect: Expect,
    in_flight: &in_flight::Shared,
) -> Result<Vec<ReceivedFile>, ApiError> {
    let mut files = Vec::new();
    while let Some(mut field) = form.next_part().await? {
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
        files.push(
            form.receive(&mut field, &ingest.storage, reservation, in_flight)
                .await?,
        );
    }
    if files.is_empty() {
        return Err(ApiError::MissingFile(match expect {
            Expect::One => "the form has no file part named `file`",
            Expect::Many => "the form has no file part",
        }));
    }
    Ok(files)
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
    ingest::commit(
        ingest,
        owner.user_id,
        reservation,
        rows,
        entries,
        "multipart",
    )
    .await
}

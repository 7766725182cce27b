//! `POST /upload` (one part named `file`) and `POST /files` (a batch, all or nothing).

pub mod clock;
pub mod content_type;
mod digest;
pub mod filename;
mod form;
mod pace;

use actix_web::{HttpRequest, HttpResponse, guard, http::header, middleware::from_fn, web};
use serde::Serialize;

pub use self::form::Limits;
use self::form::{Form, ReceivedFile, is_file};
use crate::{
    auth::{self, Owner},
    db,
    error::ApiError,
    files::{FileObject, FileRecord, record},
    in_flight,
    quota::Reservation,
    state::AppState,
    telemetry::{self, metrics},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/upload")
            .route(web::post().to(upload))
            .wrap(from_fn(auth::identify)),
    )
    // Only POST: the other methods of `/files` fall through to the files module's resource.
    .service(
        web::resource("/files")
            .guard(guard::Post())
            .route(web::post().to(upload_batch))
            .wrap(from_fn(auth::identify)),
    );
}

/// The tutorial's endpoint: exactly one file part, named `file`; other fields are ignored.
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let received = receive(&req, payload, &state, owner, Expect::One).await?;
    let stored = commit(&state, owner, received).await?;
    let record = &stored[0];
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, record.location()))
        .json(record.to_object()))
}

#[derive(Serialize)]
struct Batch {
    files: Vec<FileObject>,
}

/// Every part that names a file is stored; either all of them are, or none.
async fn upload_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    owner: Owner,
) -> Result<HttpResponse, ApiError> {
    let received = receive(&req, payload, &state, owner, Expect::Many).await?;
    let stored = commit(&state, owner, received).await?;
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

/// The files of one request, on disk, and the quota they hold.
struct Received {
    files: Vec<ReceivedFile>,
    reservation: Reservation,
}

/// Reads the whole form, streaming the expected file parts to storage and skipping the rest.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    owner: Owner,
    expect: Expect,
) -> Result<Received, ApiError> {
    let in_flight = std::sync::Arc::new(state.uploads.enter());
    let mut form = Form::new(req, payload, &state.limits)?;
    let mut reservation = Reservation::begin(
        &state.bookkeeping,
        owner.user_id,
        state.storage.instance(),
        state.quota,
        form.declared_length(),
    )
    .await?;
    match receive_files(&mut form, state, &mut reservation, expect, &in_flight).await {
        Ok(files) => Ok(Received { files, reservation }),
        Err(error) => {
            reservation.release().await;
            Err(error)
        }
    }
}

async fn receive_files(
    form: &mut Form<'_>,
    state: &AppState,
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
            form.receive(&mut field, &state.storage, reservation, in_flight)
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

/// Writes the rows for files already durable on disk. Spawned so that it runs to its end even
/// if the client goes away: a row committed while its object is being removed would be lost.
async fn commit(
    state: &AppState,
    owner: Owner,
    received: Received,
) -> Result<Vec<FileRecord>, ApiError> {
    let pool = state.pool.clone();
    telemetry::spawn(async move {
        let Received { files, reservation } = received;
        let rows: Vec<_> = files.iter().map(|f| f.file.clone()).collect();
        let claims: Vec<_> = files.iter().filter_map(|f| f.entry.claim()).collect();
        // Until the connection is ours nothing was sent: a failure here is a clean "no".
        let mut conn = pool.acquire().await?;
        match record::insert_all(&mut conn, owner.user_id, reservation.id(), &rows, &claims).await {
            Ok(stored) => {
                metrics::files_stored("multipart", stored.len());
                reservation.settled();
                files
                    .into_iter()
                    .for_each(|f| f.entry.commit_in_background());
                Ok(stored)
            }
            Err(error) => {
                let unknown = db::outcome_unknown(&error);
                for file in files {
                    if unknown {
                        file.entry.defer_to_sweep().await;
                    } else {
                        file.entry.abandon().await;
                    }
                }
                reservation.release().await;
                Err(error.into())
            }
        }
    })
    .await
    .map_err(ApiError::internal)?
}

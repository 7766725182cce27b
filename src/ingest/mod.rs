//! What multipart uploads and resumable uploads do alike while bytes arrive: the limits, pacing,
//! content types, filenames, and the state they share.

pub mod clock;
pub mod content_type;
pub mod filename;
pub mod incoming;
mod pace;
pub mod upload_link;

use std::sync::Arc;

use sqlx::PgPool;

use self::content_type::AllowList;
use crate::{
    access::{
        quota::{Quota, Reservation},
        upload_slots::UploadSlots,
    },
    base::{
        configuration::UploadSettings,
        error::ApiError,
        in_flight::InFlight,
        telemetry::{self, metrics},
    },
    catalog::{
        committer::Committer,
        record::{self, FileRecord, NewFile},
    },
    events::hook::Hook,
    storage::{self, Pending, RowOutcome, Storage},
};

/// Bytes gathered before they are reserved against the quota and handed to the writer: large
/// enough that a fast upload costs few thread hops and round trips, small enough that a
/// thousand slow ones fit in memory.
const BATCH_BYTES: usize = 256 * 1024;

pub struct Limits {
    pub settings: UploadSettings,
    pub allow: AllowList,
    /// `storage.inline_max_bytes`: the largest file kept in Postgres with its row.
    pub inline_max: u64,
}

impl Limits {
    pub fn new(settings: UploadSettings, inline_max: u64) -> Self {
        let allow = AllowList::new(&settings.allowed_content_types);
        Self {
            settings,
            allow,
            // Never beyond one batch: a file that needed a write to the backend is not inline.
            // A file that filled a batch has been written to the backend: it cannot be inline.
            inline_max: inline_max.min(BATCH_BYTES as u64 - 1),
        }
    }
}

/// What receiving an upload needs, whatever its protocol: registered once by start-up and
/// shared by the uploads and resumable-upload areas.
pub struct Ingest {
    pub pool: PgPool,
    pub storage: Arc<Storage>,
    pub quota: Quota,
    pub limits: Limits,
    /// The uploads being received here, for shutdown and `/metrics`.
    pub in_flight: InFlight,
    /// Commits the rows of uploads that finish together in one statement.
    pub committer: Committer,
    /// The uploads each caller has in flight here.
    pub slots: UploadSlots,
    /// Asked before an upload stores anything (`events.pre_upload`).
    pub hook: Option<Hook>,
}

/// Commits the rows of files whose bytes are stored (`changes` guard their objects), together
/// with the uploads finishing at the same time, then settles the objects and `reservation` by
/// the outcome. Spawned so that it runs to its end even if the client goes away: a row committed
/// while its object is being removed would be lost.
pub async fn commit(
    ingest: &Ingest,
    owner: i64,
    reservation: Reservation,
    rows: Vec<NewFile>,
    changes: Vec<Pending>,
) -> Result<Vec<FileRecord>, ApiError> {
    let (pool, committer) = (ingest.pool.clone(), ingest.committer.clone());
    let protocol = rows.first().map_or("multipart", |row| row.origin.protocol);
    telemetry::spawn(async move {
        let claims: Vec<_> = changes.iter().filter_map(Pending::claim).collect();
        // `None`: the owner was deleted while the files came in; their token went with them.
        let mut refused = ApiError::InvalidToken;
        let committed = match rows.first().and_then(|row| row.upload_link) {
            Some(link) => {
                let id = reservation.id();
                through_link(&pool, link, owner, id, &rows, &claims, &mut refused).await
            }
            None => {
                let id = reservation.id();
                committer.insert_all(owner, id, rows, claims).await
            }
        };
        let stored = settle(committed, changes, refused).await;
        match &stored {
            Ok(stored) => {
                metrics::files_stored(protocol, stored.len());
                reservation.committed();
            }
            Err(_) => reservation.release().await,
        }
        stored
    })
    .await
    .map_err(ApiError::internal)?
}

/// `record::insert_all` for files that came through upload link `link`, counted on it in the
/// same transaction; or nothing, with `refused` saying why the link does not take them.
async fn through_link(
    pool: &PgPool,
    link: uuid::Uuid,
    owner: i64,
    reservation: uuid::Uuid,
    rows: &[NewFile],
    claims: &[uuid::Uuid],
    refused: &mut ApiError,
) -> Result<Option<Vec<FileRecord>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(refusal) = upload_link::admit(&mut tx, link, rows).await? {
        *refused = refusal;
        return Ok(None);
    }
    let stored = record::insert_all(&mut tx, owner, reservation, rows, claims).await?;
    tx.commit().await?;
    Ok(stored)
}

/// The end of every upload: the objects of the commit that wrote the files' rows are settled by
/// its outcome, and the commit's answer is the upload's. `None` from the commit: it wrote
/// nothing because what it needed was gone, and `refused` says what.
pub async fn settle<T>(
    committed: Result<Option<T>, sqlx::Error>,
    changes: Vec<Pending>,
    refused: ApiError,
) -> Result<T, ApiError> {
    storage::settle_all(changes, RowOutcome::of(&committed)).await;
    committed?.ok_or(refused)
}

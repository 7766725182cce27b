//! The end of a resumable upload: the file made of it (or, for a final upload, of its partial
//! uploads) committed, its uploads' rows and bytes gone.

use std::sync::Arc;

use uuid::Uuid;

use super::Resumable;
use crate::{
    access::quota,
    base::{
        error::ApiError,
        telemetry::{self, metrics},
    },
    catalog::record::{self as files, FileRecord, NewFile},
    ingest::{self, upload_link},
    resumable::record,
    storage::{Pending, RowOutcome},
};

/// Makes `file` out of resumable uploads `uploads` (id and lease; the file's own id for a
/// finished upload, the partials for a final upload): in one transaction their rows go, their
/// quota reservations pass to the file, and its row is written; then their own bytes go.
/// Spawned so that it runs to its end even if the client goes away: a row committed while its
/// object is being removed would be lost. `UploadLocked` when a lease went to another request
/// before the commit.
pub async fn commit_file(
    tus: &Resumable,
    owner: i64,
    file: NewFile,
    uploads: Vec<(Uuid, Uuid)>,
    pending: Pending,
) -> Result<FileRecord, ApiError> {
    let (pool, storage) = (tus.ingest.pool.clone(), Arc::clone(&tus.ingest.storage));
    let instance = storage.instance();
    telemetry::spawn(async move {
        let (id, protocol) = (file.id, file.origin.protocol);
        let claims: Vec<_> = pending.claim().into_iter().collect();
        // The sealed objects of a final upload's partials (in a bucket) go with their rows.
        let mut forgotten = Vec::new();
        // Why nothing was committed, when the commit finds a lease gone or a link refusing.
        let mut refused = ApiError::UploadLocked;
        let committed = async {
            let mut tx = pool.begin().await?;
            if let Some(link) = file.upload_link
                && let Some(refusal) =
                    upload_link::admit(&mut tx, link, std::slice::from_ref(&file)).await?
            {
                refused = refusal;
                return Ok(None);
            }
            for &(upload, lease) in &uploads {
                if !record::delete(&mut tx, upload, lease).await? {
                    return Ok(None);
                }
                if upload != id
                    && let Some(forget) = storage.begin_forget_partial(upload, &mut tx).await?
                {
                    forgotten.push(forget);
                }
            }
            let from: Vec<_> = uploads.iter().map(|&(upload, _)| upload).collect();
            if from != [id] {
                quota::merge(&mut tx, &from, id, instance).await?;
            }
            // The uploads' rows keep their owner (a foreign key): the owner is there.
            let Some(stored) = files::insert_all(&mut tx, owner, id, &[file], &claims).await?
            else {
                return Ok(None);
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stored.into_iter().next())
        }
        .await;
        let outcome = RowOutcome::of(&committed);
        for forget in forgotten {
            forget.settle(outcome).await;
        }
        let stored = ingest::settle(committed, vec![pending], refused).await?;
        metrics::files_stored(protocol, 1);
        for (upload, _) in uploads {
            if let Err(error) = storage.forget_resumable(upload).await {
                tracing::warn!(%upload, %error, "could not remove an upload's own bytes once it was a file; the sweep will");
            }
        }
        Ok::<_, ApiError>(stored)
    })
    .await
    .map_err(ApiError::internal)?
}

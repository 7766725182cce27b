//! An upload's lease, held by one request for as long as it writes.

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Resumable;
use crate::{
    access::auth::Owner,
    resumable::{
        record::{self, Leased, Refused},
        writers,
    },
    storage::resumable::Appender,
};

/// An upload's lease, held for one request. Dropped while held (the request was cancelled), it
/// waits for storage writes under way, then gives the lease back.
pub struct Holding<'a> {
    pub(super) resumable: &'a Resumable,
    pub upload: Leased,
    pub(super) appender: Option<Appender>,
    pub(super) held: bool,
    /// Cancelled when a newer request asks for the upload (see `writers`).
    pub(super) superseded: CancellationToken,
}

impl<'a> Holding<'a> {
    pub fn new(resumable: &'a Resumable, upload: Leased) -> Self {
        Self {
            superseded: resumable.writers.enter(upload.id),
            resumable,
            upload,
            appender: None,
            held: true,
        }
    }

    /// Gives the lease back without recording anything.
    pub async fn give_back(mut self) {
        self.held = false;
        let appender = self.appender.take();
        release(
            self.resumable.ingest.pool.clone(),
            Lease::from(&self.upload),
            appender,
        )
        .await;
    }
}

/// What giving a lease back needs: the upload, the lease, and the quota it held when leased.
struct Lease {
    id: Uuid,
    lease: Uuid,
    reserved: i64,
}

impl From<&Leased> for Lease {
    fn from(upload: &Leased) -> Self {
        Self {
            id: upload.id,
            lease: upload.lease,
            reserved: upload.reserved,
        }
    }
}

/// Waits for storage writes under way, then gives the lease back with what the request reserved
/// beyond it. A failure is logged: another instance takes the lease over once this one is gone,
/// and a newer request asks for it (what stays reserved goes with the upload's end).
async fn release(pool: sqlx::PgPool, lease: Lease, appender: Option<Appender>) {
    if let Some(appender) = appender {
        appender.drain().await;
    }
    let Lease {
        id,
        lease,
        reserved,
    } = lease;
    if let Err(error) = record::release(&pool, id, lease, reserved).await {
        tracing::warn!(%id, %error, "could not give an upload's lease back");
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.resumable
            .writers
            .leave(self.upload.id, &self.superseded);
        if !self.held {
            return;
        }
        let appender = self.appender.take();
        tokio::spawn(release(
            self.resumable.ingest.pool.clone(),
            Lease::from(&self.upload),
            appender,
        ));
    }
}

/// Waits after asking the request that holds an upload's lease to let go: it records what it
/// has received first.
const RELEASE_WAITS_MS: [u64; 7] = [50, 100, 200, 400, 800, 1600, 2000];

/// Takes the upload's lease for this request. A request that holds it (on any instance) is
/// asked to stop, as tusd does: the client has come back, most likely because the connection
/// of that request died without a word.
pub(super) async fn lease(
    resumable: &Resumable,
    id: Uuid,
    owner: Owner,
) -> Result<Result<record::Leased, Refused>, sqlx::Error> {
    let instance = resumable.ingest.storage.instance();
    let mut taken = record::take_lease(&resumable.ingest.pool, id, owner.user_id, instance).await?;
    if let Err(Refused::Locked(Some(holder))) = taken {
        writers::ask_release(
            &resumable.writers,
            &resumable.ingest.pool,
            instance,
            holder,
            id,
        )
        .await?;
        for wait in RELEASE_WAITS_MS {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            taken = record::take_lease(&resumable.ingest.pool, id, owner.user_id, instance).await?;
            if !matches!(taken, Err(Refused::Locked(_))) {
                break;
            }
        }
    }
    Ok(taken)
}

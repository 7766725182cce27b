//! An upload's lease, held by one request for as long as it writes.

use tokio_util::sync::CancellationToken;

use super::Tus;
use crate::{
    resumable::record::{self, Leased},
    storage::resumable::Appender,
};

/// An upload's lease, held for one request. Dropped while held (the request was cancelled), it
/// waits for storage writes under way, then gives the lease back.
pub struct Holding<'a> {
    pub(super) tus: &'a Tus,
    pub upload: Leased,
    pub(super) appender: Option<Appender>,
    pub(super) held: bool,
    /// Cancelled when a newer request asks for the upload (see `writers`).
    pub(super) superseded: CancellationToken,
}

impl<'a> Holding<'a> {
    pub fn new(tus: &'a Tus, upload: Leased) -> Self {
        Self {
            superseded: tus.writers.enter(upload.id),
            tus,
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
            self.tus.ingest.pool.clone(),
            Lease::from(&self.upload),
            appender,
        )
        .await;
    }
}

/// What giving a lease back needs: the upload, the lease, and the quota it held when leased.
struct Lease {
    id: uuid::Uuid,
    lease: uuid::Uuid,
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
        self.tus.writers.leave(self.upload.id, &self.superseded);
        if !self.held {
            return;
        }
        let appender = self.appender.take();
        tokio::spawn(release(
            self.tus.ingest.pool.clone(),
            Lease::from(&self.upload),
            appender,
        ));
    }
}

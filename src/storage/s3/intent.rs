//! A bucket's object change under way, recorded in `storage_intents` so that whatever happens
//! to the process, the sweep's repair pass can tell what to keep.

use std::{collections::VecDeque, io, sync::Arc};

use object_store::multipart::PartId;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::S3Store;
use crate::base::in_flight;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Upload,
    Delete,
}

/// One object change under way, recorded in `storage_intents` until its fate is known.
#[derive(Debug)]
pub struct Intent {
    store: Option<Arc<S3Store>>,
    pub(super) id: Uuid,
    change: Change,
    /// The intent's row exists (an upload records it before its first byte is sent).
    recorded: bool,
    pub(super) upload_id: Option<String>,
    /// Keeps the upload counted as in flight until an abandoned object is gone.
    hold: Option<in_flight::Shared>,
    /// Parts of an abandoned upload still being sent: awaited before the abort.
    pub(super) parts_sending: VecDeque<JoinHandle<object_store::Result<PartId>>>,
}

impl Intent {
    pub(super) fn for_upload(store: Arc<S3Store>, id: Uuid, hold: in_flight::Shared) -> Self {
        Self {
            store: Some(store),
            id,
            change: Change::Upload,
            recorded: false,
            upload_id: None,
            hold: Some(hold),
            parts_sending: VecDeque::new(),
        }
    }

    /// `upload_id`: a resumable upload's multipart upload, to abort with it.
    pub(super) fn for_delete(store: Arc<S3Store>, id: Uuid, upload_id: Option<String>) -> Self {
        Self {
            store: Some(store),
            id,
            change: Change::Delete,
            recorded: true,
            upload_id,
            hold: None,
            parts_sending: VecDeque::new(),
        }
    }

    /// Nothing left to do.
    pub fn settled() -> Self {
        Self {
            store: None,
            id: Uuid::nil(),
            change: Change::Upload,
            recorded: false,
            upload_id: None,
            hold: None,
            parts_sending: VecDeque::new(),
        }
    }

    #[tracing::instrument(name = "db.record_intent", skip_all, fields(object_id = %self.id))]
    pub(super) async fn record(&mut self, upload_id: Option<String>) -> io::Result<()> {
        let store = self.store.as_ref().expect("an unsettled intent");
        insert(&store.pool, self.id, store.instance, upload_id.as_deref())
            .await
            .map_err(io::Error::other)?;
        self.recorded = true;
        self.upload_id = upload_id;
        Ok(())
    }

    /// The id the row's statement must claim (`claim_intents`): an upload's.
    pub fn claim(&self) -> Option<Uuid> {
        (self.change == Change::Upload && self.recorded).then_some(self.id)
    }

    /// The row change is committed. An upload's intent went with it; a delete's object goes
    /// now (and its intent after it).
    pub async fn commit(mut self) {
        if let (Some(store), Change::Delete) = (self.store.take(), self.change) {
            store
                .remove_and_forget(self.id, self.upload_id.as_deref())
                .await;
        }
    }

    /// As `commit`, without waiting (an upload's has nothing left to do).
    pub fn commit_in_background(mut self) {
        match self.change {
            Change::Upload => self.store = None,
            Change::Delete => drop(tokio::spawn(self.commit())),
        }
    }

    /// The row's outcome is unknown: this instance's sweep decides once Postgres answers.
    pub async fn defer_to_sweep(mut self) {
        if let Some(store) = self.store.take()
            && self.recorded
        {
            store.defer(self.id).await;
        }
    }

    /// The row change did not happen: an upload's object goes; a delete's stays (its intent
    /// was rolled back with the row's deletion).
    pub async fn abandon(mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        if self.change == Change::Delete || !self.recorded {
            return;
        }
        for part in std::mem::take(&mut self.parts_sending) {
            let _ = part.await;
        }
        store
            .remove_and_forget(self.id, self.upload_id.as_deref())
            .await;
        drop(self.hold.take());
    }
}

/// Records intent `id` of `instance` (with the multipart upload to abort, if any).
pub(super) async fn insert(
    conn: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    instance: Uuid,
    upload_id: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO storage_intents (object_id, instance, upload_id) VALUES ($1, $2, $3)",
        id,
        instance,
        upload_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

impl Drop for Intent {
    /// Dropped unsettled (the request failed or was cancelled): abandoned in the background.
    fn drop(&mut self) {
        if self.store.is_none() {
            return;
        }
        let intent = Self {
            store: self.store.take(),
            id: self.id,
            change: self.change,
            recorded: self.recorded,
            upload_id: self.upload_id.take(),
            hold: self.hold.take(),
            parts_sending: std::mem::take(&mut self.parts_sending),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(intent.abandon());
        }
    }
}

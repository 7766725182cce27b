//! The PATCHes writing on this instance, so that a newer request for the same upload can ask
//! the one holding its lease to stop: a client whose connection died without a word comes back
//! long before the old request's idle timeout would end it. Other instances ask through
//! Postgres (`NOTIFY`), which every instance listens to.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CHANNEL: &str = "intake_tus_release";
/// How long a listener that lost its connection waits before it connects again.
const RECONNECT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Writers(Mutex<HashMap<Uuid, CancellationToken>>);

impl Writers {
    /// Registers the request that now holds `id`'s lease; its token is cancelled when a newer
    /// request asks for the upload.
    pub fn enter(&self, id: Uuid) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert(id, token.clone());
        token
    }

    /// The request holding `token` is done with `id`.
    pub fn leave(&self, id: Uuid, token: &CancellationToken) {
        let mut writers = self.lock();
        if writers.get(&id).is_some_and(|held| held == token) {
            writers.remove(&id);
        }
    }

    pub fn stop(&self, id: Uuid) {
        if let Some(token) = self.lock().get(&id) {
            token.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancellationToken>> {
        self.0.lock().expect("the writers' map is never poisoned")
    }
}

/// Asks the instance `holder` to stop the request writing to `id`.
#[tracing::instrument(name = "db.ask_release", skip_all, fields(upload_id = %id))]
pub async fn ask_release(
    writers: &Writers,
    pool: &PgPool,
    this_instance: Uuid,
    holder: Uuid,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    if holder == this_instance {
        writers.stop(id);
        return Ok(());
    }
    sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// Stops the requests other instances ask for, for as long as the returned task runs.
pub fn spawn_listening(pool: PgPool, writers: std::sync::Arc<Writers>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = listen(&pool, &writers).await {
                tracing::warn!(%error, "lost the tus release channel; listening again soon");
            }
            tokio::time::sleep(RECONNECT).await;
        }
    })
}

async fn listen(pool: &PgPool, writers: &Writers) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let asked = listener.recv().await?;
        if let Ok(id) = Uuid::parse_str(asked.payload()) {
            writers.stop(id);
        }
    }
}

//! The bucket's part of the storage's repair pass: intents left by this instance (their
//! outcome was unknown) and by instances that are gone, each settled by whether its row exists.

use std::io;

use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use super::S3Store;

/// A probe object older than this, in seconds, is no probe's under way (the probe's answer is
/// bounded by `health.timeout_ms`, seconds).
const STALE_PROBE_SECS: i64 = 60;
use crate::{
    base::{liveness, telemetry::cause_chain},
    storage::{RepairError, Repaired},
};

impl S3Store {
    /// Settles this instance's deferred intents and those of instances that are gone. Returns
    /// what it did and the instances running. An intent it cannot settle stays for the next
    /// pass: deferred in Postgres, or, while Postgres cannot be told, in memory.
    pub async fn repair(&self) -> Result<(Repaired, Vec<Uuid>), RepairError> {
        self.record_deferred().await?;
        let others = sqlx::query_scalar!(
            r#"
            SELECT DISTINCT instance FROM storage_intents WHERE instance <> $1
            UNION SELECT DISTINCT instance FROM quota_reservations WHERE instance <> $1
            "#,
            self.instance
        )
        .fetch_all(&self.pool)
        .await?;
        let others: Vec<Uuid> = others.into_iter().flatten().collect();
        let mut alive = liveness::running(&self.pool, &others).await?;
        let dead: Vec<Uuid> = others
            .into_iter()
            .filter(|other| !alive.contains(other))
            .collect();
        let due = sqlx::query_scalar!(
            r#"
            SELECT object_id FROM storage_intents
            WHERE instance = ANY($1) OR (instance = $2 AND deferred)
            "#,
            &dead,
            self.instance
        )
        .fetch_all(&self.pool)
        .await?;
        // Each is tried, whatever happened to the one before.
        let mut report = Repaired::default();
        let mut failed = None;
        for id in due {
            match self.settle(id).await {
                Ok(Some(true)) => report.kept += 1,
                Ok(Some(false)) => report.removed += 1,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%id, error = %cause_chain(&error), "could not settle an intent; the next sweep will");
                    failed.get_or_insert(error);
                }
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        report.removed += self.remove_stale_probes().await?;
        alive.push(self.instance);
        Ok((report, alive))
    }

    /// Removes the readiness probe's objects that outlived their probe (its delete failed, or
    /// the probe was cut short by its timeout). A probe under way is younger than `STALE_PROBE_SECS`.
    async fn remove_stale_probes(&self) -> Result<usize, RepairError> {
        let stale_before = time::OffsetDateTime::now_utc().unix_timestamp() - STALE_PROBE_SECS;
        let probes: Vec<_> = self
            .client
            .list(Some(&self.probes()))
            .try_collect()
            .await
            .map_err(io::Error::from)?;
        let mut removed = 0;
        for probe in probes
            .into_iter()
            .filter(|probe| probe.last_modified.timestamp() < stale_before)
        {
            match self.client.delete(&probe.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(error) => return Err(io::Error::from(error).into()),
            }
        }
        Ok(removed)
    }

    /// Marks the intents deferred in memory as deferred in Postgres; those it cannot mark stay
    /// in memory.
    async fn record_deferred(&self) -> Result<(), RepairError> {
        let deferred = std::mem::take(&mut *self.deferred.lock().expect("never poisoned"));
        if deferred.is_empty() {
            return Ok(());
        }
        let marked = sqlx::query!(
            "UPDATE storage_intents SET deferred = true WHERE object_id = ANY($1)",
            &deferred
        )
        .execute(&self.pool)
        .await;
        if let Err(error) = marked {
            self.deferred
                .lock()
                .expect("never poisoned")
                .extend(deferred);
            return Err(error.into());
        }
        Ok(())
    }

    /// Settles one intent, holding its row locked throughout so that a commit that claims it
    /// waits, then finds it gone. `None` when it was already settled.
    async fn settle(&self, id: Uuid) -> Result<Option<bool>, RepairError> {
        let mut tx = self.pool.begin().await?;
        let intent = sqlx::query!(
            r#"
            SELECT upload_id, EXISTS (SELECT 1 FROM files WHERE id = $1) AS "kept!"
            FROM storage_intents WHERE object_id = $1 FOR UPDATE
            "#,
            id
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(intent) = intent else {
            return Ok(None);
        };
        if !intent.kept {
            self.remove_object(id, intent.upload_id.as_deref()).await?;
        }
        sqlx::query!("DELETE FROM storage_intents WHERE object_id = $1", id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(intent.kept))
    }
}

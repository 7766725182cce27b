//! The bucket's part of the storage's repair pass: intents left by this instance (their
//! outcome was unknown) and by instances that are gone, each settled by whether its row exists.

use uuid::Uuid;

use super::S3Store;
use crate::{
    base::liveness,
    storage::{RepairError, Repaired},
};

impl S3Store {
    /// Settles this instance's deferred intents and those of instances that are gone. Returns
    /// what it did and the instances running.
    pub async fn repair(&self) -> Result<(Repaired, Vec<Uuid>), RepairError> {
        let mut report = Repaired::default();
        let deferred = std::mem::take(
            &mut *self
                .deferred
                .lock()
                .expect("the deferred list is never poisoned"),
        );
        let others = sqlx::query_scalar!(
            r#"
            SELECT DISTINCT instance FROM storage_intents WHERE instance <> $1
            UNION SELECT DISTINCT instance FROM quota_reservations WHERE instance <> $1
            "#,
            self.instance
        )
        .fetch_all(&self.pool)
        .await;
        let others: Vec<Uuid> = match others {
            Ok(rows) => rows.into_iter().flatten().collect(),
            Err(error) => {
                self.deferred
                    .lock()
                    .expect("never poisoned")
                    .extend(deferred);
                return Err(error.into());
            }
        };
        let mut alive = liveness::running(&self.pool, &others).await?;
        let dead: Vec<Uuid> = others
            .into_iter()
            .filter(|other| !alive.contains(other))
            .collect();
        let mut orphans = sqlx::query_scalar!(
            "SELECT object_id FROM storage_intents WHERE instance = ANY($1)",
            &dead
        )
        .fetch_all(&self.pool)
        .await?;
        orphans.extend(deferred);
        for id in orphans {
            match self.settle(id).await {
                Ok(Some(true)) => report.kept += 1,
                Ok(Some(false)) => report.removed += 1,
                Ok(None) => {}
                Err(error) => {
                    self.defer(id);
                    return Err(error);
                }
            }
        }
        alive.push(self.instance);
        Ok((report, alive))
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

//! Files whose lifetime is over (`files.expires_at`): gone for every reader at once (the reads
//! of `record` and `links` leave them out), then deleted by the sweep as `DELETE` deletes a
//! file: the row, its usage and its share links in one transaction, with the object's removal
//! held by the same journal entry or intent, so that a crash anywhere leaves nothing
//! half-deleted. Each instance's sweep takes the rows no other has locked: a file is deleted
//! once, by one of them.

use sqlx::PgPool;

use crate::storage::{RowOutcome, Storage, settle_all};

/// Files deleted in one transaction.
const BATCH: i64 = 100;

/// Deletes every expired file; how many there were.
pub async fn delete_expired(storage: &Storage, pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let batch = delete_batch(storage, pool).await?;
        deleted += batch;
        if batch < BATCH as usize {
            return Ok(deleted);
        }
    }
}

#[tracing::instrument(name = "db.delete_expired_files", skip_all)]
async fn delete_batch(storage: &Storage, pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Share links go with their rows (`ON DELETE CASCADE`), an inline file's bytes too.
    let gone = sqlx::query!(
        r#"
        WITH deleted AS (
            DELETE FROM files WHERE id IN (
                SELECT id FROM files WHERE expires_at <= now()
                ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
            )
            RETURNING id, owner_id, size, inline
        ), changed AS (
            INSERT INTO usage_changes (user_id, used_delta)
            SELECT owner_id, -size FROM deleted
        )
        SELECT id, inline FROM deleted
        "#,
        BATCH
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut changes = Vec::new();
    for file in gone.iter().filter(|file| !file.inline) {
        if let Some(change) = storage.begin_delete(file.id, &mut tx).await? {
            changes.push(change);
        }
    }
    let committed = tx.commit().await.map(Some);
    settle_all(changes, RowOutcome::of(&committed)).await;
    committed?;
    if !gone.is_empty() {
        tracing::info!(files = gone.len(), "deleted files whose lifetime was over");
    }
    Ok(gone.len())
}

//! Group commit: the rows of uploads that finish while a commit is under way are inserted
//! together by the next one. A small upload's cost was mostly Postgres running one statement and
//! one commit for it (docs/profiles.md); one statement for all that are waiting divides it.
//! Nobody waits for company: a commit starts as soon as a committer is free, with whatever is
//! queued by then, so a lone upload is committed at once.

use std::{collections::HashSet, io, sync::Arc};

use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use super::record::{self, FileRecord, NewFile};

/// Commits running at once: while one waits for its WAL flush, the next gathers the rows that
/// arrived meanwhile.
const COMMITTERS: usize = 2;
/// The most uploads one statement carries.
const MOST: usize = 64;

type Outcome = Result<Option<Vec<FileRecord>>, sqlx::Error>;

struct Job {
    owner: i64,
    reservation: Uuid,
    rows: Vec<NewFile>,
    /// The storage intents of its objects in a bucket, claimed with its rows.
    claims: Vec<Uuid>,
    reply: oneshot::Sender<Outcome>,
    /// The upload's request span: a commit of its own stays in the request's trace, a group
    /// commit follows from every request it serves.
    span: tracing::Span,
}

#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::UnboundedSender<Job>,
}

impl Committer {
    /// Starts the committers; they stop when the last `Committer` is dropped.
    pub fn start(pool: sqlx::PgPool) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..COMMITTERS {
            let (pool, jobs) = (pool.clone(), Arc::clone(&jobs));
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&jobs).await {
                    commit(&pool, batch).await;
                }
            });
        }
        Self { queue }
    }

    /// As `record::insert_all`, committed with the other uploads waiting at the same time. A
    /// failed claim of a storage intent fails the group; its uploads are then committed one by
    /// one, so that it fails only its own.
    pub async fn insert_all(
        &self,
        owner: i64,
        reservation: Uuid,
        rows: Vec<NewFile>,
        claims: Vec<Uuid>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            owner,
            reservation,
            rows,
            claims,
            reply,
            span: tracing::Span::current(),
        };
        if self.queue.send(job).is_err() {
            return Err(sqlx::Error::PoolClosed);
        }
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// Waits for one job, then takes whatever else is queued.
async fn next_batch(jobs: &Mutex<mpsc::UnboundedReceiver<Job>>) -> Option<Vec<Job>> {
    let mut jobs = jobs.lock().await;
    let first = jobs.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MOST
        && let Ok(job) = jobs.try_recv()
    {
        batch.push(job);
    }
    Some(batch)
}

async fn commit(pool: &sqlx::PgPool, batch: Vec<Job>) {
    if let [_] = batch.as_slice() {
        let job = batch.into_iter().next().expect("one job");
        let outcome = alone(pool, &job).await;
        let _ = job.reply.send(outcome);
        return;
    }
    let span = tracing::info_span!("group_commit", uploads = batch.len());
    for job in &batch {
        span.follows_from(&job.span);
    }
    let claims: Vec<Uuid> = batch
        .iter()
        .flat_map(|job| job.claims.iter().copied())
        .collect();
    match record::insert_batch(pool, &batch_rows(&batch), &claims)
        .instrument(span)
        .await
    {
        Ok(stored) => {
            let ids: HashSet<Uuid> = stored.iter().map(|(id, _)| *id).collect();
            let created_at = stored.first().map(|(_, at)| *at);
            for job in batch {
                let outcome = Ok(records(&job, &ids, created_at));
                let _ = job.reply.send(outcome);
            }
        }
        // Refused as a whole, so nothing was committed: each on its own, to find which.
        Err(error) if !crate::base::db::outcome_unknown(&error) => {
            tracing::debug!(%error, uploads = batch.len(), "a group commit failed; committing one by one");
            for job in batch {
                let outcome = alone(pool, &job).await;
                let _ = job.reply.send(outcome);
            }
        }
        // Committed or not, nobody knows: every upload of it is settled by the sweep.
        Err(error) => {
            for job in batch {
                let unknown = io::Error::new(io::ErrorKind::ConnectionAborted, error.to_string());
                let _ = job.reply.send(Err(sqlx::Error::Io(unknown)));
            }
        }
    }
}

async fn alone(pool: &sqlx::PgPool, job: &Job) -> Outcome {
    async {
        let mut conn = pool.acquire().await?;
        record::insert_all(
            &mut conn,
            job.owner,
            job.reservation,
            &job.rows,
            &job.claims,
        )
        .await
    }
    .instrument(job.span.clone())
    .await
}

fn batch_rows(batch: &[Job]) -> Vec<record::BatchRow<'_>> {
    batch
        .iter()
        .flat_map(|job| {
            job.rows.iter().map(|file| record::BatchRow {
                owner: job.owner,
                reservation: job.reservation,
                file,
            })
        })
        .collect()
}

/// A job's rows as stored; `None` when its owner was gone and none was.
fn records(
    job: &Job,
    stored: &HashSet<Uuid>,
    created_at: Option<OffsetDateTime>,
) -> Option<Vec<FileRecord>> {
    let created_at = created_at?;
    if !job.rows.iter().all(|row| stored.contains(&row.id)) {
        return None;
    }
    Some(job.rows.iter().map(|row| row.record(created_at)).collect())
}

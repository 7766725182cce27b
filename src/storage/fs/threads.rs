//! The threads that hash and write uploads' batches: one per core, started with the store, each
//! fed through its own channel. Under load a thread goes from batch to batch without parking,
//! and no batch passes through the blocking pool's shared queue, whose lock, contended by the
//! dozens of threads the pool grows to, cost more wake-ups and yields than the writes it handed
//! out (docs/profiles.md). Between its batches an upload holds no thread: a slow client costs
//! the batch it is filling, nothing more. Syncing, which waits on the disk, stays on the
//! blocking pool, so that one slow sync does not hold up other uploads' writes.

use std::{
    io,
    panic::{self, AssertUnwindSafe},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
struct Lane {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not yet done.
    queued: Arc<AtomicUsize>,
}

/// Cheap to clone: every writer holds one. The threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct WriteThreads {
    lanes: Arc<[Lane]>,
}

impl WriteThreads {
    /// Starts one thread per core.
    pub(super) fn start() -> io::Result<Self> {
        let count = thread::available_parallelism().map_or(1, usize::from);
        let lanes = (0..count)
            .map(|index| {
                let (jobs, received) = mpsc::channel::<Job>();
                let queued = Arc::new(AtomicUsize::new(0));
                let done = Arc::clone(&queued);
                thread::Builder::new()
                    .name(format!("intake-writer-{index}"))
                    .spawn(move || {
                        for job in received {
                            // A panic drops the job's reply, which its writer reports as an
                            // error; the thread goes on with the next job.
                            let _ = panic::catch_unwind(AssertUnwindSafe(job));
                            done.fetch_sub(1, Ordering::Relaxed);
                        }
                    })?;
                Ok(Lane { jobs, queued })
            })
            .collect::<io::Result<_>>()?;
        Ok(Self { lanes })
    }

    /// Runs `work` on the thread with the fewest jobs waiting (one held up by a slow write gets
    /// no more until it catches up); its result comes back through the returned job.
    pub(super) fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Running<T> {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.queued.load(Ordering::Relaxed))
            .expect("at least one thread");
        let (reply, result) = oneshot::channel();
        lane.queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        if lane.jobs.send(job).is_err() {
            // The thread is gone (it cannot be while `self` lives); the reply, dropped with the
            // job, says so to whoever waits.
            lane.queued.fetch_sub(1, Ordering::Relaxed);
        }
        Running(result)
    }
}

/// A job on a writing thread, awaited for its result.
#[derive(Debug)]
pub(super) struct Running<T>(oneshot::Receiver<T>);

impl<T> Running<T> {
    pub(super) async fn done(self) -> io::Result<T> {
        self.0
            .await
            .map_err(|_| io::Error::other("the writing thread failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_return_their_results_and_a_panic_fails_only_its_own() {
        let threads = WriteThreads::start().unwrap();
        let failed = threads.run(|| -> u32 { panic!("a job that fails") });
        assert!(failed.done().await.is_err());
        // As many jobs as threads and more: every thread survived and takes work.
        let lanes = threads.lanes.len();
        let running: Vec<_> = (0..lanes * 3).map(|n| threads.run(move || n * 2)).collect();
        for (n, job) in running.into_iter().enumerate() {
            assert_eq!(job.done().await.unwrap(), n * 2);
        }
    }
}

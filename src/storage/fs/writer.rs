//! Writes one object on the blocking pool, a batch at a time, hashing and counting as the bytes
//! go by. Between batches an upload holds no thread: a client that sends slowly costs the memory
//! of the batch it is filling, never a thread of the blocking pool.

use std::{
    fs::{File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::{JournalEntry, link, sync_parent};
use crate::storage::{Written, partial::Partial};

/// Writeback is started for every window written, so that disk writes overlap receiving and
/// the final sync finds little left to flush. (Waiting for each window as well was slower.)
const WRITEBACK_WINDOW: u64 = 32 * 1024 * 1024;

/// The file and what has been learnt of its bytes; owned by the batch being written, if any.
struct Progress {
    /// Created by the first batch, on the blocking pool like every other file operation.
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    flushed: u64,
    /// Where this writer's time went, for its trace.
    hashing: Duration,
    writing: Duration,
}

/// Batches written on the blocking pool one after another: writing one overlaps receiving the
/// next, and at most two are held in memory.
pub(super) struct Pipeline {
    idle: Option<Progress>,
    writing: Option<JoinHandle<io::Result<Progress>>>,
}

impl Pipeline {
    fn new(progress: Progress) -> Self {
        Self {
            idle: Some(progress),
            writing: None,
        }
    }

    /// Hands a batch to the blocking pool, once the previous one is written.
    async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        let mut progress = self.wait_idle().await?;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            progress.write(&batch)?;
            Ok(progress)
        }));
        Ok(())
    }

    async fn wait_idle(&mut self) -> io::Result<Progress> {
        if let Some(batch) = self.writing.take() {
            return batch.await?;
        }
        // Only a failed batch leaves neither; its error was returned when it was waited for.
        self.idle
            .take()
            .ok_or_else(|| io::Error::other("the object writer failed earlier"))
    }

    /// Writes the last batch and syncs the file, on the blocking pool, then runs `then` there.
    async fn finish<T: Send + 'static>(
        &mut self,
        last: Vec<Bytes>,
        then: impl FnOnce(&Progress) -> io::Result<T> + Send + 'static,
    ) -> io::Result<(Progress, T)> {
        let mut progress = self.wait_idle().await?;
        let (progress, outcome, syncing) = tokio::task::spawn_blocking(move || {
            progress.write(&last)?;
            let started = Instant::now();
            let outcome = then(&progress)?;
            Ok::<_, io::Error>((progress, outcome, started.elapsed()))
        })
        .await??;
        // The current span is the storage operation's (`telemetry::metrics::observed`).
        let span = tracing::Span::current();
        span.record("hashing_ms", millis(progress.hashing));
        span.record("writing_ms", millis(progress.writing));
        span.record("syncing_ms", millis(syncing));
        Ok((progress, outcome))
    }

    /// A batch still on the blocking pool, which whatever undoes the file must wait for.
    fn in_flight(&mut self) -> Option<JoinHandle<io::Result<Progress>>> {
        self.writing.take()
    }
}

/// The request side of an upload's writer. Dropping it before `finish` abandons the object
/// (the journal entry removes it).
pub struct FsWriter {
    pipeline: Pipeline,
    /// Taken by `finish`, or by `drop` to undo once a batch still being written is done.
    entry: Option<JournalEntry>,
}

impl FsWriter {
    pub(super) fn new(entry: JournalEntry) -> Self {
        Self {
            pipeline: Pipeline::new(Progress::new(entry.path().to_owned())),
            entry: Some(entry),
        }
    }

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        self.pipeline.write(batch).await
    }

    /// Writes the last batch, flushes the object to disk and links it at its final path, in one
    /// trip to the blocking pool (a small upload makes no other); the returned entry removes it
    /// again unless committed.
    pub async fn finish(mut self, last: Vec<Bytes>) -> io::Result<(Written, JournalEntry)> {
        let entry = self.entry.take().expect("finish runs once");
        let object = entry.object().to_owned();
        let (progress, ()) = self
            .pipeline
            .finish(last, move |progress| {
                let file = progress.file()?;
                // Linking before the sync lets one journal commit (ext4, xfs) carry both the data
                // and the new entry; the directory sync after it then finds nothing left to do.
                // Until the row exists the journal entry keeps the object removable.
                link(&progress.path, &object)?;
                file.sync_data()?;
                sync_parent(&object)
            })
            .await?;
        Ok((progress.written(), entry))
    }
}

/// Appends a PATCH's bytes to a resumable upload's file.
pub struct FsAppender {
    pipeline: Pipeline,
}

impl FsAppender {
    /// Continues the file at `path` after `size` bytes hashed into `hasher`; whatever lies
    /// beyond (a write cut short by a crash or discarded) is cut off first.
    pub(super) async fn open(path: PathBuf, size: u64, hasher: Sha256) -> io::Result<Self> {
        let progress = tokio::task::spawn_blocking(move || {
            let mut file = OpenOptions::new()
                .create(size == 0)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // Growing the file would fill the gap with zeros: its bytes are lost, not resumable.
            if file.metadata()?.len() < size {
                return Err(io::Error::other(format!(
                    "{} holds fewer than the {size} bytes recorded",
                    path.display()
                )));
            }
            file.set_len(size)?;
            file.seek(SeekFrom::Start(size))?;
            Ok::<_, io::Error>(Progress {
                file: Some(file),
                path,
                hasher,
                size,
                flushed: size,
                hashing: Duration::ZERO,
                writing: Duration::ZERO,
            })
        })
        .await??;
        Ok(Self {
            pipeline: Pipeline::new(progress),
        })
    }

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        self.pipeline.write(batch).await
    }

    /// Writes the last batch and makes everything durable: the size and hash state returned
    /// may be recorded.
    pub async fn pause(mut self, last: Vec<Bytes>) -> io::Result<Partial> {
        let (progress, ()) = self
            .pipeline
            .finish(last, |progress| progress.file()?.sync_data())
            .await?;
        Ok(progress.partial())
    }

    /// Makes what was written so far durable without ending the PATCH: the size and hash state
    /// returned may be recorded.
    pub async fn checkpoint(&mut self) -> io::Result<Partial> {
        let progress = self.pipeline.wait_idle().await?;
        let progress = tokio::task::spawn_blocking(move || {
            progress.file()?.sync_data()?;
            Ok::<_, io::Error>(progress)
        })
        .await??;
        let recorded = progress.partial();
        self.pipeline.idle = Some(progress);
        Ok(recorded)
    }

    /// Waits for a batch still being written: the file must not change after the lease that
    /// guards it is given up.
    pub async fn drain(mut self) {
        if let Some(batch) = self.pipeline.in_flight() {
            let _ = batch.await;
        }
    }
}

impl Drop for FsWriter {
    /// Abandoned mid-upload: a batch still on the blocking pool would create or grow the file
    /// after an undo, so the entry (whose drop undoes, holding the upload in flight) waits for it.
    fn drop(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        match (
            self.pipeline.in_flight(),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(batch), Ok(runtime)) => drop(runtime.spawn(async move {
                let _ = batch.await;
                drop(entry);
            })),
            _ => drop(entry),
        }
    }
}

impl Progress {
    fn new(path: PathBuf) -> Self {
        Self {
            file: None,
            path,
            hasher: Sha256::new(),
            size: 0,
            flushed: 0,
            hashing: Duration::ZERO,
            writing: Duration::ZERO,
        }
    }

    fn file(&self) -> io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("the object file was never created"))
    }

    fn partial(&self) -> Partial {
        Partial {
            size: self.size,
            hasher: self.hasher.clone(),
            multipart: None,
        }
    }

    fn written(self) -> Written {
        Written {
            size: self.size,
            sha256: self.hasher.finalize().into(),
        }
    }

    /// Appends `batch`, creating the file first if need be.
    fn write(&mut self, batch: &[Bytes]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(File::create(&self.path)?);
            tracing::debug!(journal = %self.path.display(), "object file created");
        }
        let file = self.file.as_mut().expect("created above");
        for chunk in batch {
            let started = Instant::now();
            self.hasher.update(chunk);
            let hashed = Instant::now();
            file.write_all(chunk)?;
            self.hashing += hashed - started;
            self.writing += hashed.elapsed();
            self.size += chunk.len() as u64;
        }
        if self.size - self.flushed >= WRITEBACK_WINDOW {
            writeback::start(file, self.flushed, self.size - self.flushed);
            self.flushed = self.size;
        }
        Ok(())
    }
}

/// `sync_file_range(2)`: advice to the kernel, so failures are ignored; `sync_data` at the end
/// is what makes the bytes durable.
#[cfg(target_os = "linux")]
mod writeback {
    use std::{fs::File, os::fd::AsRawFd};

    /// Starts writing the range out without waiting for it.
    pub fn start(file: &File, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: plain integers and a descriptor that `file` keeps open for the call.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

/// Elsewhere the final `sync_data` does all the work.
#[cfg(not(target_os = "linux"))]
mod writeback {
    pub fn start(_: &std::fs::File, _: u64, _: u64) {}
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

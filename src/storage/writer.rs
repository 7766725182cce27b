//! Writes one object on a blocking thread, hashing and counting as the bytes go by.

use std::{fs::File, io, io::Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{JournalEntry, link, sync_parent};

/// Chunks in flight between the request and the disk; bounds memory per upload (a chunk is
/// what one socket read brought, at most a few tens of KiB).
const QUEUE: usize = 2;

/// Writeback is started for every window written, so that disk writes overlap receiving and
/// the final sync finds little left to flush. (Waiting for each window as well was slower.)
const WRITEBACK_WINDOW: u64 = 32 * 1024 * 1024;

enum Message {
    Chunk(Bytes),
    Finish,
}

#[derive(Debug)]
pub struct Written {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The request side of an upload's writer. Dropping it before `finish` abandons the object.
pub struct ObjectWriter {
    sender: mpsc::Sender<Message>,
    task: JoinHandle<io::Result<Written>>,
    entry: JournalEntry,
}

impl ObjectWriter {
    pub(super) fn spawn(file: File, entry: JournalEntry) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let path = entry.path().to_owned();
        let object = entry.object().to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let (file, written) = write(file, receiver)?;
            // Linking before the sync lets one journal commit (ext4, xfs) carry both the data
            // and the new entry; the directory sync after it then finds nothing left to do.
            // Until the row exists the journal entry keeps the object removable.
            link(&path, &object)?;
            file.sync_data()?;
            sync_parent(&object)?;
            Ok(written)
        });
        Self {
            sender,
            task,
            entry,
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if self.sender.send(Message::Chunk(chunk)).await.is_err() {
            // The writer stopped early: its result says why.
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Flushes the object to disk and links it at its final path; the returned entry removes
    /// it again unless committed.
    pub async fn finish(mut self) -> io::Result<(Written, JournalEntry)> {
        if self.sender.send(Message::Finish).await.is_err() {
            return Err(self.failure().await);
        }
        let written = (&mut self.task).await??;
        Ok((written, self.entry))
    }

    async fn failure(&mut self) -> io::Error {
        match (&mut self.task).await {
            Ok(Err(error)) => error,
            Ok(Ok(_)) => io::Error::other("object writer finished early"),
            Err(join) => io::Error::other(join),
        }
    }
}

fn write(mut file: File, mut receiver: mpsc::Receiver<Message>) -> io::Result<(File, Written)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut flushed = 0u64;
    loop {
        match receiver.blocking_recv() {
            Some(Message::Chunk(chunk)) => {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                size += chunk.len() as u64;
                if size - flushed >= WRITEBACK_WINDOW {
                    writeback::start(&file, flushed, size - flushed);
                    flushed = size;
                }
            }
            Some(Message::Finish) => break,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "upload abandoned",
                ));
            }
        }
    }
    let written = Written {
        size,
        sha256: hasher.finalize().into(),
    };
    Ok((file, written))
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

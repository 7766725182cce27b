//! Writes one object on a blocking thread, hashing and counting as the bytes go by.

use std::{fs::File, io, io::Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{JournalEntry, link_durably};

/// Chunks in flight between the request and the disk; bounds memory per upload.
const QUEUE: usize = 8;

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
            let written = write(file, receiver)?;
            link_durably(&path, &object)?;
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

fn write(mut file: File, mut receiver: mpsc::Receiver<Message>) -> io::Result<Written> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match receiver.blocking_recv() {
            Some(Message::Chunk(chunk)) => {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                size += chunk.len() as u64;
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
    file.sync_data()?;
    Ok(Written {
        size,
        sha256: hasher.finalize().into(),
    })
}

//! The memory parts fill in, bounded across the process (`storage.s3.buffer_memory_bytes`).
//!
//! A part fills in memory while the budget has room for it, reserving in steps of 1 MiB as it
//! grows. When a step is refused the part gives its memory back and goes on filling in an
//! unnamed file on local disk (spilled): a slow client then holds disk, not memory. A spilled
//! part comes back into memory only to be sent, from a share of the budget kept for that, so
//! that what waits for memory waits for parts on their way to the bucket, never for a slow
//! client.

use std::{io, path::PathBuf, sync::Arc};

use bytes::Bytes;
use object_store::PutPayload;
use tokio::{
    fs::File,
    io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::base::telemetry::metrics;

/// Memory is reserved in steps of this.
const STEP: usize = 1 << 20;

#[derive(Debug)]
pub(super) struct Budget {
    /// For parts being filled in memory (and sent from there).
    filling: Arc<Semaphore>,
    /// For spilled parts read back to be sent.
    sending: Arc<Semaphore>,
    /// The sending share's size: no read-back asks for more, or it would wait forever.
    sending_total: usize,
    spill_dir: PathBuf,
}

impl Budget {
    /// `total` bytes (at least two parts and two steps: one share for each use), a quarter of
    /// them (at least a part and a step) for spilled parts on their way. `spill_dir` empty: the
    /// system's temporary directory.
    pub(super) fn new(total: usize, part_size: usize, spill_dir: &str) -> Self {
        let least = part_size + STEP;
        let total = total.max(2 * least);
        let sending = (total / 4).max(least);
        Self {
            filling: Arc::new(Semaphore::new(total - sending)),
            sending: Arc::new(Semaphore::new(sending)),
            sending_total: sending,
            spill_dir: if spill_dir.is_empty() {
                std::env::temp_dir()
            } else {
                PathBuf::from(spill_dir)
            },
        }
    }

    fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        Arc::clone(&self.filling).try_acquire_many_owned(bytes).ok()
    }

    async fn read_back(&self, bytes: usize) -> io::Result<OwnedSemaphorePermit> {
        // A part is at most a part and a batch, which the share holds; never more than it all.
        let bytes = u32::try_from(bytes.min(self.sending_total)).map_err(io::Error::other)?;
        if let Ok(permit) = Arc::clone(&self.sending).try_acquire_many_owned(bytes) {
            return Ok(permit);
        }
        metrics::part_buffer("waited");
        Arc::clone(&self.sending)
            .acquire_many_owned(bytes)
            .await
            .map_err(io::Error::other)
    }

    async fn spill_file(&self) -> io::Result<File> {
        let dir = self.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir)).await??;
        metrics::part_buffer("spilled");
        Ok(File::from_std(file))
    }
}

/// The bytes of the part being filled.
#[derive(Debug)]
pub(super) enum Buffer {
    Memory {
        chunks: Vec<Bytes>,
        len: usize,
        /// At least `len` bytes of the budget's filling share (none yet: nothing reserved).
        reserved: Option<OwnedSemaphorePermit>,
    },
    Spilled {
        file: File,
        len: usize,
    },
}

impl Default for Buffer {
    fn default() -> Self {
        Self::holding(Vec::new())
    }
}

impl Buffer {
    /// `chunks`, reserved for when more is added.
    pub(super) fn holding(chunks: Vec<Bytes>) -> Self {
        Self::Memory {
            len: chunks.iter().map(Bytes::len).sum(),
            chunks,
            reserved: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Memory { len, .. } | Self::Spilled { len, .. } => *len,
        }
    }

    pub(super) async fn push(&mut self, budget: &Budget, batch: Vec<Bytes>) -> io::Result<()> {
        let added: usize = batch.iter().map(Bytes::len).sum();
        if let Self::Memory {
            chunks,
            len,
            reserved,
        } = self
        {
            let held = reserved
                .as_ref()
                .map_or(0, OwnedSemaphorePermit::num_permits);
            let short = (*len + added).saturating_sub(held);
            let fits = short == 0
                || budget
                    .reserve(short.div_ceil(STEP) * STEP)
                    .map(|more| match reserved {
                        Some(permit) => permit.merge(more),
                        None => *reserved = Some(more),
                    })
                    .is_some();
            if fits {
                chunks.extend(batch);
                *len += added;
                return Ok(());
            }
            let mut file = budget.spill_file().await?;
            write_all(&mut file, chunks).await?;
            let len = *len;
            *self = Self::Spilled { file, len };
        }
        let Self::Spilled { file, len } = self else {
            unreachable!("a buffer that is not in memory is spilled")
        };
        write_all(file, &batch).await?;
        *len += added;
        Ok(())
    }

    /// Its first `limit` bytes, in memory, with the budget they hold until they are sent, and a
    /// buffer with the rest.
    pub(super) async fn split_off(
        self,
        budget: &Budget,
        limit: usize,
    ) -> io::Result<(PutPayload, Option<OwnedSemaphorePermit>, Self)> {
        let (chunks, mut held, from_memory) = match self {
            Self::Memory {
                chunks, reserved, ..
            } => (chunks, reserved, true),
            Self::Spilled { mut file, len } => {
                let permit = budget.read_back(len).await?;
                (vec![read_all(&mut file, len).await?], Some(permit), false)
            }
        };
        let (mut room, mut part, mut rest) = (limit, Vec::new(), Vec::new());
        for mut chunk in chunks {
            if room == 0 {
                rest.push(chunk);
            } else if chunk.len() <= room {
                room -= chunk.len();
                part.push(chunk);
            } else {
                part.push(chunk.split_to(room));
                room = 0;
                rest.push(chunk);
            }
        }
        let mut rest = Self::holding(rest);
        // What is left of a read-back part is held by the sending share, which must not fill:
        // it reserves from the filling share when more arrives.
        if let (true, Some(permit), Self::Memory { len, reserved, .. }) =
            (from_memory, held.as_mut(), &mut rest)
        {
            *reserved = permit.split(*len);
        }
        Ok((part.into_iter().collect(), held, rest))
    }

    /// A copy of its bytes; it goes on filling.
    pub(super) async fn contents(&mut self, budget: &Budget) -> io::Result<Bytes> {
        match self {
            Self::Memory { chunks, .. } => Ok(match chunks.as_slice() {
                [] => Bytes::new(),
                [chunk] => chunk.clone(),
                _ => chunks.concat().into(),
            }),
            Self::Spilled { file, len } => {
                let _held = budget.read_back(*len).await?;
                read_all(file, *len).await
            }
        }
    }
}

async fn write_all(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    for chunk in chunks {
        file.write_all(chunk).await?;
    }
    Ok(())
}

/// Reads the whole file, leaving its position at the end for what is added next.
async fn read_all(file: &mut File, len: usize) -> io::Result<Bytes> {
    file.flush().await?;
    file.rewind().await?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes).await?;
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: usize = 5 * STEP;

    fn batch(byte: u8, len: usize) -> Vec<Bytes> {
        vec![Bytes::from(vec![byte; len])]
    }

    fn filling_left(budget: &Budget) -> usize {
        budget.filling.available_permits()
    }

    #[tokio::test]
    async fn a_part_fills_in_memory_while_the_budget_has_room_and_gives_it_back_when_sent() {
        let budget = Budget::new(0, PART, "");
        let room = filling_left(&budget);
        let mut buffer = Buffer::default();
        buffer.push(&budget, batch(1, PART + 100)).await.unwrap();
        assert!(matches!(buffer, Buffer::Memory { .. }));
        assert_eq!(filling_left(&budget), room - 6 * STEP);

        let (part, held, rest) = buffer.split_off(&budget, PART).await.unwrap();
        assert_eq!(part.content_length(), PART);
        assert_eq!(rest.len(), 100);
        drop((part, held));
        // The rest keeps its own bytes' share of the reservation.
        assert_eq!(filling_left(&budget), room - 100);
        drop(rest);
        assert_eq!(filling_left(&budget), room);
    }

    #[tokio::test]
    async fn a_part_the_budget_has_no_room_for_spills_to_disk_and_comes_back_whole() {
        let budget = Budget::new(0, PART, "");
        let (room, sending) = (filling_left(&budget), budget.sending.available_permits());
        let mut first = Buffer::default();
        first.push(&budget, batch(1, room)).await.unwrap();

        let mut second = Buffer::default();
        second.push(&budget, batch(2, STEP)).await.unwrap();
        second.push(&budget, batch(3, STEP + 7)).await.unwrap();
        assert!(matches!(second, Buffer::Spilled { .. }));
        assert_eq!(second.contents(&budget).await.unwrap().len(), 2 * STEP + 7);
        second.push(&budget, batch(4, 9)).await.unwrap();

        let (part, held, rest) = second.split_off(&budget, 2 * STEP).await.unwrap();
        let bytes: Vec<u8> = part.iter().flat_map(|chunk| chunk.to_vec()).collect();
        assert_eq!(bytes.len(), 2 * STEP);
        assert!(bytes[..STEP].iter().all(|&byte| byte == 2));
        assert!(bytes[STEP..].iter().all(|&byte| byte == 3));
        assert_eq!(
            budget.sending.available_permits(),
            sending - (2 * STEP + 16)
        );
        let mut rest = rest;
        assert_eq!(
            rest.contents(&budget).await.unwrap(),
            vec![3; 7].into_iter().chain([4; 9]).collect::<Bytes>()
        );
        drop((held, rest));
        assert_eq!(budget.sending.available_permits(), sending);
        drop(first);
        assert_eq!(filling_left(&budget), room);
    }
}

//! Streams one object to the bucket. Bytes gather into parts of `part_size`; each full part is
//! sent while the next is received, at most `parts_in_flight` at once, in memory from the
//! process's budget or, when it is full, spilled to disk (`buffer`). The SHA-256 is computed on
//! the blocking pool as batches arrive. An object smaller than one part is stored with one PUT.

use std::{collections::VecDeque, io, sync::Arc};

use bytes::Bytes;
use object_store::{ObjectStoreExt, multipart::MultipartStore, multipart::PartId};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Intent, MIN_PART_SIZE, S3Store, buffer::Buffer, copy::MAX_COPY_PART, part_size};
use crate::{
    base::{in_flight, telemetry},
    storage::{
        Written,
        partial::{Expected, Multipart, Partial},
    },
};

enum Hashing {
    Ready(Sha256),
    Running(JoinHandle<Sha256>),
}

/// Parts of one object being filled, hashed and sent.
pub(super) struct Parts {
    store: Arc<S3Store>,
    key: object_store::path::Path,
    hashing: Option<Hashing>,
    size: u64,
    /// Every part but the last is cut at this size.
    part_size: usize,
    part: Buffer,
    sent: Vec<PartId>,
    sending: VecDeque<JoinHandle<object_store::Result<PartId>>>,
}

impl Parts {
    fn new(store: Arc<S3Store>, id: Uuid) -> Self {
        Self {
            key: store.key(id),
            part_size: store.part_size,
            store,
            hashing: Some(Hashing::Ready(Sha256::new())),
            size: 0,
            part: Buffer::default(),
            sent: Vec::new(),
            sending: VecDeque::new(),
        }
    }

    /// Counts and hashes a batch (on the blocking pool, after the previous one) and adds it to
    /// the part being filled.
    async fn take(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        self.count(batch.clone()).await?;
        self.part.push(&self.store.budget, batch).await
    }

    /// Counts and hashes a batch (on the blocking pool, after the previous one) that is in the
    /// bucket already: a copied part's.
    async fn count(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        let mut hasher = self.hashed().await?;
        self.size += batch.iter().map(|chunk| chunk.len() as u64).sum::<u64>();
        self.hashing = Some(Hashing::Running(tokio::task::spawn_blocking(move || {
            batch.iter().for_each(|chunk| hasher.update(chunk));
            hasher
        })));
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.part.len() >= self.part_size
    }

    async fn hashed(&mut self) -> io::Result<Sha256> {
        match self.hashing.take() {
            Some(Hashing::Ready(hasher)) => Ok(hasher),
            Some(Hashing::Running(job)) => Ok(job.await?),
            None => Err(io::Error::other("the object writer failed earlier")),
        }
    }

    /// Starts sending the part being filled, cut at exactly the part size (what is beyond stays
    /// for the next part), so that every part but the last has the same size, as providers
    /// such as R2 require; waits for the oldest part when too many are on their way. The part's
    /// share of the memory budget goes with it and comes back when it has been sent.
    async fn send(&mut self, upload_id: &str) -> io::Result<()> {
        let buffer = std::mem::take(&mut self.part);
        let (payload, held, rest) = buffer.split_off(&self.store.budget, self.part_size).await?;
        self.part = rest;
        let (index, store, key, upload_id) = self.next_part(upload_id);
        self.enqueue(async move {
            let _held = held;
            store
                .client
                .put_part(&key, &upload_id, index, payload)
                .await
        })
        .await
    }

    /// Starts copying object `source` inside the bucket as the next part.
    async fn copy(&mut self, upload_id: &str, source: Uuid) -> io::Result<()> {
        let (index, store, key, upload_id) = self.next_part(upload_id);
        self.enqueue(async move { store.copy_part(&key, &upload_id, index, source).await })
            .await
    }

    /// What a task sending the next part needs: its index and where it goes.
    fn next_part(
        &self,
        upload_id: &str,
    ) -> (usize, Arc<S3Store>, object_store::path::Path, String) {
        let index = self.sent.len() + self.sending.len();
        (
            index,
            Arc::clone(&self.store),
            self.key.clone(),
            upload_id.to_owned(),
        )
    }

    /// Puts a part on its way; waits for the oldest part when too many are.
    async fn enqueue(
        &mut self,
        part: impl Future<Output = object_store::Result<PartId>> + Send + 'static,
    ) -> io::Result<()> {
        self.sending.push_back(telemetry::spawn(part));
        while self.sending.len() > self.store.parts_in_flight {
            let oldest = self.sending.pop_front().expect("not empty");
            self.sent.push(oldest.await??);
        }
        Ok(())
    }

    /// Waits for every part on its way.
    async fn all_sent(&mut self) -> io::Result<()> {
        while let Some(part) = self.sending.pop_front() {
            self.sent.push(part.await??);
        }
        Ok(())
    }
}

/// The request side of an upload to the bucket. Dropping it before `finish` abandons the
/// object: parts being sent are stopped and the intent removes what reached the bucket.
pub struct S3Writer {
    parts: Parts,
    intent: Intent,
}

impl S3Writer {
    pub(super) fn new(store: Arc<S3Store>, id: Uuid, hold: in_flight::Shared) -> Self {
        Self {
            intent: Intent::for_upload(Arc::clone(&store), id, hold),
            parts: Parts::new(store, id),
        }
    }

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        self.parts.take(batch).await?;
        while self.parts.is_full() {
            let upload_id = self.multipart().await?;
            self.parts.send(&upload_id).await?;
        }
        Ok(())
    }

    /// Copies object `source` of `length` bytes inside the bucket as the object's next part,
    /// where it can be one: parts are copied here (`storage.s3.copy_parts`), it is no smaller
    /// than S3's smallest part nor larger than its largest, and the bytes waiting before it
    /// (sent first) can be a part of their own. `false` if it cannot, and nothing is done: the
    /// caller writes its bytes instead. After a copy the caller gives its bytes to `count`.
    pub async fn copy_object(&mut self, source: Uuid, length: u64) -> io::Result<bool> {
        let waiting = self.parts.part.len();
        let copyable = self.parts.store.copies()
            && (MIN_PART_SIZE as u64..=MAX_COPY_PART).contains(&length)
            && (waiting == 0 || waiting >= MIN_PART_SIZE);
        if !copyable {
            return Ok(false);
        }
        let upload_id = self.multipart().await?;
        if waiting > 0 {
            self.parts.send(&upload_id).await?;
        }
        self.parts.copy(&upload_id, source).await?;
        Ok(true)
    }

    /// Counts and hashes the bytes of an object copied in (`copy_object`).
    pub async fn count(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        self.parts.count(batch).await
    }

    /// Sends what is left, completes the object, and returns it with the intent that removes
    /// it again unless its row claims it.
    pub async fn finish(mut self, last: Vec<Bytes>) -> io::Result<(Written, Intent)> {
        let parts = &mut self.parts;
        parts.take(last).await?;
        if let Some(upload_id) = self.intent.upload_id.clone() {
            while parts.part.len() > 0 {
                parts.send(&upload_id).await?;
            }
            parts.all_sent().await?;
            let sent = std::mem::take(&mut parts.sent);
            let store = &parts.store;
            let made = store
                .client
                .complete_multipart(&parts.key, &upload_id, sent)
                .await
                .map(drop);
            store.completed(&parts.key, parts.size, made).await?;
        } else {
            self.intent.record(None).await?;
            let buffer = std::mem::take(&mut parts.part);
            let (payload, _held, _) = buffer.split_off(&parts.store.budget, usize::MAX).await?;
            parts.store.client.put(&parts.key, payload).await?;
        }
        let sha256 = parts.hashed().await?.finalize().into();
        let written = Written {
            size: parts.size,
            sha256,
        };
        let intent = std::mem::replace(&mut self.intent, Intent::settled());
        Ok((written, intent))
    }

    /// The object's multipart upload, started the first time a part is to go.
    async fn multipart(&mut self) -> io::Result<String> {
        match &self.intent.upload_id {
            Some(upload_id) => Ok(upload_id.clone()),
            None => self.start_multipart().await,
        }
    }

    /// The intent is recorded before any part is sent, so that the sweep can always abort what
    /// reached the bucket. (A crash between starting the upload and recording it leaves an upload
    /// without parts: the bucket's lifecycle rule removes those.)
    async fn start_multipart(&mut self) -> io::Result<String> {
        let (client, key) = (&self.parts.store.client, &self.parts.key);
        let upload_id = client.create_multipart(key).await?;
        if let Err(error) = self.intent.record(Some(upload_id.clone())).await {
            let _ = client.abort_multipart(key, &upload_id).await;
            return Err(error);
        }
        tracing::debug!(id = %self.intent.id, %upload_id, "multipart upload started");
        Ok(upload_id)
    }
}

impl Drop for S3Writer {
    /// Abandoned mid-upload: the parts on their way are left to finish before the upload is
    /// aborted, since a part still being received by the server could outlive the abort.
    fn drop(&mut self) {
        self.intent.parts_sending = std::mem::take(&mut self.parts.sending);
    }
}

/// Appends a PATCH's bytes to a resumable upload's multipart upload: full parts are sent as
/// they fill; what is left after the last one (the tail) is handed back to be recorded.
pub struct S3Appender {
    parts: Parts,
    upload_id: String,
}

impl S3Appender {
    /// `expected`: what the request brings, to choose the part size by when the upload has
    /// none yet (`part_size`).
    pub(super) fn new(
        store: Arc<S3Store>,
        id: Uuid,
        size: u64,
        hasher: Sha256,
        multipart: Multipart,
        expected: Expected,
    ) -> Self {
        let mut parts = Parts::new(store, id);
        parts.hashing = Some(Hashing::Ready(hasher));
        parts.size = size;
        parts.part_size = match multipart.part_size {
            Some(chosen) => chosen as usize,
            // Nothing is cut yet: the first request's body decides.
            None if multipart.parts.is_empty() && multipart.tail.is_empty() => {
                part_size::for_first(expected, parts.part_size)
            }
            None => parts.part_size,
        };
        parts.sent = multipart
            .parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        if !multipart.tail.is_empty() {
            parts.part = Buffer::holding(vec![multipart.tail]);
        }
        Self {
            parts,
            upload_id: multipart.upload_id,
        }
    }

    pub async fn write(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        // The tail is in `part` already and was hashed when it arrived: only new bytes count.
        self.parts.take(batch).await?;
        while self.parts.is_full() {
            self.parts.send(&self.upload_id).await?;
        }
        Ok(())
    }

    /// Takes the last batch and waits for the parts on their way: what is returned may be
    /// recorded.
    pub async fn pause(mut self, last: Vec<Bytes>) -> io::Result<Partial> {
        self.write(last).await?;
        self.checkpoint().await
    }

    /// Waits for the parts on their way without ending the PATCH: what is returned (the part
    /// being filled as the tail) may be recorded.
    pub async fn checkpoint(&mut self) -> io::Result<Partial> {
        // The tail, shorter than a part, goes into the upload's row: parts are all one size.
        self.parts.all_sent().await?;
        let hasher = self.parts.hashed().await?;
        self.parts.hashing = Some(Hashing::Ready(hasher.clone()));
        let multipart = Multipart {
            upload_id: self.upload_id.clone(),
            parts: self
                .parts
                .sent
                .iter()
                .map(|part| part.content_id.clone())
                .collect(),
            tail: self.parts.part.contents(&self.parts.store.budget).await?,
            part_size: Some(self.parts.part_size as u64),
        };
        Ok(Partial {
            size: self.parts.size,
            hasher,
            multipart: Some(multipart),
        })
    }

    /// Waits for the parts still on their way: a later PATCH must not race them for a part
    /// number.
    pub async fn drain(mut self) {
        for part in std::mem::take(&mut self.parts.sending) {
            let _ = part.await;
        }
    }
}

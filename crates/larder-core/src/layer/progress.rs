//! The progress layer: operations and blob bytes counted as they happen.
//!
//! Counts entry reads (and hits), entry writes, blob reads, writes and placements, and the blob
//! bytes that flow each way: read bytes as the caller consumes a [`BlobRead`]'s stream, written
//! bytes as the inner store consumes a `put_blob` payload, placed bytes from the destination
//! file's size once `place_blob` is done. An optional callback gets each byte increment (a
//! progress bar's `inc`). Counters are relaxed atomics: one add per chunk or call.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;

use super::Layered;
use crate::digest::Digest;
use crate::entry::Entry;
use crate::error::Result;
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, GetOptions, Placement, PutOptions, PutOutcome, Store, VerifiedFile,
};

/// Called with each number of blob bytes transferred.
pub type BytesFn = Arc<dyn Fn(u64) + Send + Sync>;

/// What a [`Progress`] layer has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressCounts {
    /// Entry reads.
    pub entry_reads: u64,
    /// Entry reads that found an entry.
    pub entry_hits: u64,
    /// Entry writes.
    pub entry_writes: u64,
    /// Blob reads opened.
    pub blob_reads: u64,
    /// Blob writes.
    pub blob_writes: u64,
    /// Blobs placed into files.
    pub blobs_placed: u64,
    /// Blob bytes read by callers (streams and placements).
    pub bytes_read: u64,
    /// Blob bytes written (payload bytes the inner store consumed).
    pub bytes_written: u64,
}

#[derive(Default)]
struct Counters {
    entry_reads: AtomicU64,
    entry_hits: AtomicU64,
    entry_writes: AtomicU64,
    blob_reads: AtomicU64,
    blob_writes: AtomicU64,
    blobs_placed: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    on_bytes: Option<BytesFn>,
}

impl Counters {
    fn bytes(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        if let Some(f) = &self.on_bytes {
            f(n);
        }
    }
}

/// `S`, counting what goes through it.
pub struct Progress<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S: Store> fmt::Debug for Progress<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("inner", &self.inner)
            .field("counts", &self.counts())
            .finish()
    }
}

impl<S: Store> Progress<S> {
    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner`, counted.
    pub fn new(inner: S) -> Self {
        Progress {
            inner,
            counters: Arc::new(Counters::default()),
        }
    }

    /// `inner`, counted, with `on_bytes` called for every blob byte increment.
    pub fn with_callback(inner: S, on_bytes: BytesFn) -> Self {
        Progress {
            inner,
            counters: Arc::new(Counters {
                on_bytes: Some(on_bytes),
                ..Counters::default()
            }),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> ProgressCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressCounts {
            entry_reads: get(&c.entry_reads),
            entry_hits: get(&c.entry_hits),
            entry_writes: get(&c.entry_writes),
            blob_reads: get(&c.blob_reads),
            blob_writes: get(&c.blob_writes),
            blobs_placed: get(&c.blobs_placed),
            bytes_read: get(&c.bytes_read),
            bytes_written: get(&c.bytes_written),
        }
    }
}

impl<S: Store> fmt::Display for Progress<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// `stream`, adding each chunk's length to `pick(counters)`.
fn counted(
    stream: ByteStream,
    counters: Arc<Counters>,
    pick: fn(&Counters) -> &AtomicU64,
) -> ByteStream {
    stream
        .inspect(move |chunk| {
            if let Ok(c) = chunk {
                counters.bytes(pick(&counters), c.len() as u64);
            }
        })
        .boxed()
}

#[async_trait]
impl<S: Store> Layered for Progress<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let found = self.inner.get_entry_opts(key, opts).await?;
        self.counters.entry_reads.fetch_add(1, Ordering::Relaxed);
        if found.is_some() {
            self.counters.entry_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        self.counters.entry_writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put_entry_opts(key, entry, opts).await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let Some(read) = self.inner.get_blob(digest).await? else {
            return Ok(None);
        };
        self.counters.blob_reads.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::clone(&self.counters);
        Ok(Some(BlobRead {
            size: read.size,
            stream: counted(read.stream, counters, |c| &c.bytes_read),
        }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        self.counters.blob_writes.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::clone(&self.counters);
        let payload = counted(payload, counters, |c| &c.bytes_written);
        self.inner.put_blob(digest, size, payload).await
    }

    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        self.counters.blob_writes.fetch_add(1, Ordering::Relaxed);
        let size = file.size();
        let outcome = self.inner.put_blob_file(digest, file).await?;
        self.counters.bytes(&self.counters.bytes_written, size);
        Ok(outcome)
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let placed = self.inner.place_blob(digest, dest, how).await?;
        if placed {
            self.counters.blobs_placed.fetch_add(1, Ordering::Relaxed);
            if let Ok(m) = std::fs::metadata(dest) {
                self.counters.bytes(&self.counters.bytes_read, m.len());
            }
        }
        Ok(placed)
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Progress<S>);

//! The tiered store: several stores, fastest first, used as one.
//!
//! Reads:
//! - `get_entry` asks each tier in order and stops at the first hit, so a hit in the local tier
//!   never touches a remote one. A hit in a slower tier backfills the faster ones before the
//!   entry is returned: each faster tier written synchronously gets the blobs it lacks (streamed
//!   from the tier that hit, never whole in memory) and then the entry ([`copy_entry`]); each
//!   faster queued tier gets the key queued. A failed backfill costs a warning (the first per
//!   tier) and never the hit; when reading the tier that hit is what failed, the error is that
//!   tier's (counted there, and reported by its best-effort layer), not the faster tier's. Lookups with `record_access` off (inspection) do not backfill.
//! - `get_blob` and `place_blob` go tier by tier to the first that has the blob. With
//!   [`Tiered::with_blob_backfill`] (servers, whose clients fetch blobs by digest), a blob found
//!   only in a slower tier is first copied into the faster synchronous tiers and served from
//!   there.
//! - Per-tier hits, misses, errors and backfills are counted ([`Tiered::tier_stats`]; what
//!   `larder stats` reports per tier).
//!
//! Writes, by each tier's [`TierWrite`]:
//! - [`TierWrite::Sync`] (the default): written before the call returns. A blob written to
//!   several tiers is streamed to all of them at once through small bounded channels (the
//!   slowest tier sets the pace; memory stays at a few chunks per tier).
//! - [`TierWrite::Queued`]: after the synchronous tiers took a new entry, its key is handed to
//!   an [`UploadQueue`] (the worker's and server's durable upload queue), whose worker copies
//!   the entry and its blobs from a faster tier later ([`copy_entry`]). Blob writes skip it.
//! - [`TierWrite::Never`]: read only (a shared cache this machine may not fill).
//!
//! `find_missing` answers for writers: a digest is missing when any synchronously written tier
//! lacks it, so the following `put_blob` reaches every tier that needs it.
//!
//! Errors: a tier's error is returned as is (and counted). Tiers that may fail or hang without
//! failing the build are wrapped in [`BestEffort`](super::BestEffort) first; that layer turns
//! their failures into misses and skips them for the rest of the run after a time-out, so "the
//! run goes on with the tiers that answer".
//!
//! Maintenance goes to the first tier: `list`, `stats`, `trim` and the capability are its own;
//! [`Tiered::trim_tiers`] also trims every slower tier that has a budget of its own
//! ([`Tier::with_budget`]: a shared bucket kept at its size by whoever runs `larder trim`);
//! `delete` goes to every synchronously written tier that can delete (not to queued tiers: a
//! replica's client does not delete from the shared upstream, and a queued upload could bring
//! the entry back anyway); `flush` to every tier.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::digest::{Digest, HashFn};
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, Capability, EntryMeta, GetOptions, Placement, ProgressFn, PutOptions,
    PutOutcome, Store, StoreStats, TrimOptions, TrimReport, VerifiedFile, check_hash_fn,
};

/// Chunks buffered per tier while one blob streams to several tiers.
const TEE_DEPTH: usize = 4;

/// Takes keys whose entries must reach a slower tier later, durably.
///
/// # Contract
/// - [`enqueue`](UploadQueue::enqueue) returns once the key is recorded so that it survives a
///   restart (the upload itself happens later, in the queue's own workers).
/// - When it is called, the entry and its blobs are in every faster tier written synchronously;
///   the worker copies them from there ([`copy_entry`]) and SHOULD retry failed uploads.
/// - Enqueueing a key already queued is harmless.
#[async_trait]
pub trait UploadQueue: Send + Sync + fmt::Debug {
    /// Record that the entry under `key` must be uploaded.
    async fn enqueue(&self, key: &Key) -> Result<()>;
}

/// How a tier takes writes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TierWrite {
    /// Written before the write call returns.
    #[default]
    Sync,
    /// Written later, by the queue's workers.
    Queued(Arc<dyn UploadQueue>),
    /// Never written: read only.
    Never,
}

/// One tier: a store, how it is written, and its own trim budget, if any.
#[derive(Debug)]
pub struct Tier {
    store: Arc<dyn Store>,
    write: TierWrite,
    budget: Option<TrimOptions>,
    counters: TierCounters,
}

impl Tier {
    /// A tier written synchronously.
    pub fn new(store: Arc<dyn Store>) -> Tier {
        Tier::with_write(store, TierWrite::Sync)
    }

    /// A tier written through `queue`.
    pub fn queued(store: Arc<dyn Store>, queue: Arc<dyn UploadQueue>) -> Tier {
        Tier::with_write(store, TierWrite::Queued(queue))
    }

    /// A tier that is only read.
    pub fn read_only(store: Arc<dyn Store>) -> Tier {
        Tier::with_write(store, TierWrite::Never)
    }

    /// A tier written as `write` says.
    pub fn with_write(store: Arc<dyn Store>, write: TierWrite) -> Tier {
        Tier {
            store,
            write,
            budget: None,
            counters: TierCounters::default(),
        }
    }

    /// This tier trimmed to its own `budget` by [`Tiered::trim_tiers`] (the budgets of the
    /// trim call then apply to the first tier only). A budget without any limit is ignored.
    pub fn with_budget(mut self, budget: TrimOptions) -> Tier {
        self.budget = budget.has_budget().then_some(budget);
        self
    }

    /// The tier's own budget, if it has one.
    pub fn budget(&self) -> Option<&TrimOptions> {
        self.budget.as_ref()
    }

    /// The tier's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store, marked as used by this run.
    fn used(&self) -> &Arc<dyn Store> {
        self.counters.used.store(true, Ordering::Relaxed);
        &self.store
    }

    fn is_sync(&self) -> bool {
        matches!(self.write, TierWrite::Sync)
    }
}

#[derive(Debug, Default)]
struct TierCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    backfilled: AtomicU64,
    backfilled_bytes: AtomicU64,
    queued: AtomicU64,
    warned: AtomicBool,
    /// Called at least once in this run (only such tiers are flushed).
    used: AtomicBool,
}

/// What one tier did, as counted by [`Tiered`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// The tier's store, as displayed.
    pub name: String,
    /// Entry reads it answered with an entry.
    pub hits: u64,
    /// Entry reads it was asked and did not answer with an entry.
    pub misses: u64,
    /// Calls to it that failed (including failed backfills into it).
    pub errors: u64,
    /// Entries copied into it from a slower tier that hit.
    pub backfilled: u64,
    /// Blob bytes copied into it by those backfills.
    pub backfilled_bytes: u64,
    /// Keys handed to its upload queue.
    pub queued: u64,
}

/// One tier's part of [`Tiered::trim_tiers`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TierTrim {
    /// The tier's store, as displayed.
    pub name: String,
    /// The budget it was trimmed to.
    pub budget: TrimOptions,
    /// What the trim did, or why it could not.
    pub result: Result<TrimReport>,
}

/// What [`copy_entry`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Blobs copied (those the destination lacked).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Copy `entry` (stored under `key` in `from`) into `to`: the blobs `to` lacks, streamed one at
/// a time, then the entry, written with `opts` (a backfill uses create-only writes, so a newer
/// entry in `to` is kept; an upload of the local truth overwrites).
///
/// `None` when `from` lacks one of the blobs (the entry is then not written: `to` never names a
/// blob it does not hold). The backfill of [`Tiered`] and upload-queue workers share this.
///
/// # Errors
/// Errors of either store.
pub async fn copy_entry(
    from: &dyn Store,
    to: &dyn Store,
    key: &Key,
    entry: &Entry,
    opts: PutOptions,
) -> Result<Option<Copied>> {
    let source_failed = Arc::new(AtomicBool::new(false));
    copy_entry_noting(from, to, key, entry, opts, &source_failed).await
}

/// [`copy_entry`], setting `source_failed` when an error came from reading `from` (opening a
/// blob, or a chunk of its stream) rather than from writing `to`.
async fn copy_entry_noting(
    from: &dyn Store,
    to: &dyn Store,
    key: &Key,
    entry: &Entry,
    opts: PutOptions,
    source_failed: &Arc<AtomicBool>,
) -> Result<Option<Copied>> {
    let mut copied = Copied::default();
    for d in to.find_missing(&entry.blob_digests()).await? {
        let Some(read) = read_source(from, &d, source_failed).await? else {
            return Ok(None);
        };
        let size = read.size;
        to.put_blob(&d, size, read.stream).await?;
        copied.blobs += 1;
        copied.bytes += size;
    }
    to.put_entry_opts(key, entry, opts).await?;
    Ok(Some(copied))
}

/// Blob `digest` of `from`, for copying into another store: an error opening it or in its
/// stream sets `source_failed`, so that the copy's error is laid at the right store's door.
async fn read_source(
    from: &dyn Store,
    digest: &Digest,
    source_failed: &Arc<AtomicBool>,
) -> Result<Option<BlobRead>> {
    let read = from.get_blob(digest).await.inspect_err(|_| {
        source_failed.store(true, Ordering::Relaxed);
    })?;
    Ok(read.map(|r| {
        let flag = Arc::clone(source_failed);
        let stream = r.stream.inspect(move |chunk| {
            if chunk.is_err() {
                flag.store(true, Ordering::Relaxed);
            }
        });
        BlobRead {
            size: r.size,
            stream: Box::pin(stream),
        }
    }))
}

/// Stores used as one, fastest first (see the [module docs](self)).
#[derive(Debug)]
pub struct Tiered {
    tiers: Vec<Tier>,
    blob_backfill: bool,
}

impl Tiered {
    /// Tiers fastest first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when there are no tiers, or a queued tier has no synchronously
    /// written tier before it to upload from.
    pub fn new(tiers: Vec<Tier>) -> Result<Tiered> {
        if tiers.is_empty() {
            return Err(Error::invalid("a tiered store needs at least one tier"));
        }
        let mut seen_sync = false;
        for t in &tiers {
            if matches!(t.write, TierWrite::Queued(_)) && !seen_sync {
                return Err(Error::invalid(format!(
                    "tier {} is written through a queue, but no faster tier is written \
                     synchronously for the queue to upload from",
                    t.store
                )));
            }
            seen_sync |= t.is_sync();
        }
        Ok(Tiered {
            tiers,
            blob_backfill: false,
        })
    }

    /// Also backfill blobs read on their own: a `get_blob` or `place_blob` that finds the blob
    /// only in a slower tier first copies it (streamed) into the faster tiers written
    /// synchronously and then serves it from the fastest. For servers, whose clients fetch
    /// blobs by digest without reading the entry through the same store; off by default.
    pub fn with_blob_backfill(mut self, on: bool) -> Self {
        self.blob_backfill = on;
        self
    }

    /// The tiers, fastest first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// What each tier did so far, fastest first.
    pub fn tier_stats(&self) -> Vec<TierStats> {
        self.tiers
            .iter()
            .map(|t| {
                let c = &t.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                TierStats {
                    name: t.store.to_string(),
                    hits: get(&c.hits),
                    misses: get(&c.misses),
                    errors: get(&c.errors),
                    backfilled: get(&c.backfilled),
                    backfilled_bytes: get(&c.backfilled_bytes),
                    queued: get(&c.queued),
                }
            })
            .collect()
    }

    /// Trim every tier that has a budget: the first one to its own budget or else to
    /// `opts`'s, each slower one to its own (tiers without a budget are left alone). `opts`'s
    /// `dry_run` and `wait_for_lock` apply to all. A tier that cannot be trimmed or fails
    /// gives its error in its row; the others are trimmed all the same.
    pub async fn trim_tiers(
        &self,
        opts: &TrimOptions,
        progress: Option<ProgressFn>,
    ) -> Vec<TierTrim> {
        let mut out = Vec::new();
        for (i, t) in self.tiers.iter().enumerate() {
            let budget = match (&t.budget, i) {
                (Some(b), _) => b.clone(),
                (None, 0) if opts.has_budget() => opts.clone(),
                _ => continue,
            };
            let mut budget = budget;
            budget.dry_run = opts.dry_run;
            budget.wait_for_lock = opts.wait_for_lock;
            let result = if t.store.capability().trim {
                t.used().trim(&budget, progress.clone()).await
            } else {
                Err(Error::NotSupported {
                    store: t.store.to_string(),
                    operation: "trim",
                })
            };
            out.push(TierTrim {
                name: t.store.to_string(),
                budget,
                result,
            });
        }
        out
    }

    /// Refuse digests of a hash function some tier cannot hold, before any tier holds part of
    /// the call. BLAKE3 blobs every store holds, so only other functions ask the tiers for
    /// their capabilities (which opens a remote tier that is opened on first use: a local hit
    /// must not pay for the remote's client).
    fn check_hash_fn(&self, digests: &[Digest]) -> Result<()> {
        if digests.iter().all(|d| d.func() == HashFn::Blake3) {
            return Ok(());
        }
        check_hash_fn(self, self.capability(), digests)
    }

    fn first(&self) -> &Tier {
        // `new` refuses an empty list.
        &self.tiers[0]
    }

    fn sync_tiers(&self) -> impl Iterator<Item = &Tier> {
        self.tiers.iter().filter(|t| t.is_sync())
    }

    /// Count a failed call to tier `t`, and warn about the first.
    fn tier_failed(&self, t: &Tier, what: &str, e: &Error) {
        t.counters.errors.fetch_add(1, Ordering::Relaxed);
        if t.counters.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!("tier {}: {what}: {e}", t.store);
        } else {
            tracing::warn!("tier {}: {what}: {e}", t.store);
        }
    }

    /// A backfill into tier `t` from tier `hit` failed with `e`: when reading the tier that hit
    /// failed (`source_failed`), that is its error, counted there and logged at debug level
    /// only (its best-effort layer reports its own failures; the tier being filled is fine);
    /// otherwise it is `t`'s.
    fn backfill_failed(&self, t: &Tier, hit: usize, source_failed: bool, what: &str, e: &Error) {
        if source_failed {
            let source = &self.tiers[hit];
            source.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("tier {}: {what} from {}: {e}", t.store, source.store);
        } else {
            self.tier_failed(t, what, e);
        }
    }

    /// Copy an entry that tier `hit` answered into the faster tiers.
    async fn backfill(&self, hit: usize, key: &Key, entry: &Entry) {
        let source = &*self.tiers[hit].store;
        for t in &self.tiers[..hit] {
            match &t.write {
                TierWrite::Sync => {
                    let source_failed = Arc::new(AtomicBool::new(false));
                    let to = &**t.used();
                    let opts = PutOptions::create();
                    match copy_entry_noting(source, to, key, entry, opts, &source_failed).await {
                        Ok(Some(c)) => {
                            t.counters.backfilled.fetch_add(1, Ordering::Relaxed);
                            t.counters
                                .backfilled_bytes
                                .fetch_add(c.bytes, Ordering::Relaxed);
                        }
                        Ok(None) => tracing::debug!(
                            "tier {}: not backfilling {key}: {source} lacks one of its blobs",
                            t.store
                        ),
                        Err(e) => {
                            let from_source = source_failed.load(Ordering::Relaxed);
                            let what = format!("backfilling {key}");
                            self.backfill_failed(t, hit, from_source, &what, &e);
                        }
                    }
                }
                TierWrite::Queued(q) => self.enqueue(t, q, key).await,
                TierWrite::Never => {}
            }
        }
    }

    /// Copy blob `digest`, found in tier `hit`, into the faster tiers written synchronously.
    /// The index of the fastest tier that now holds it (`hit` itself if none took it).
    async fn backfill_blob(&self, hit: usize, digest: &Digest) -> usize {
        let source = &self.tiers[hit].store;
        let mut holder = hit;
        for (j, t) in self.tiers[..hit].iter().enumerate().rev() {
            if !t.is_sync() {
                continue;
            }
            let source_failed = Arc::new(AtomicBool::new(false));
            let copied = async {
                let Some(read) = read_source(&**source, digest, &source_failed).await? else {
                    return Ok(None);
                };
                let size = read.size;
                t.used().put_blob(digest, size, read.stream).await?;
                Ok::<_, Error>(Some(size))
            };
            match copied.await {
                Ok(Some(size)) => {
                    t.counters
                        .backfilled_bytes
                        .fetch_add(size, Ordering::Relaxed);
                    holder = j;
                }
                Ok(None) => break,
                Err(e) => {
                    let from_source = source_failed.load(Ordering::Relaxed);
                    let what = format!("backfilling blob {digest}");
                    self.backfill_failed(t, hit, from_source, &what, &e);
                }
            }
        }
        holder
    }

    async fn enqueue(&self, t: &Tier, queue: &Arc<dyn UploadQueue>, key: &Key) {
        match queue.enqueue(key).await {
            Ok(()) => {
                t.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.tier_failed(t, &format!("queueing {key} for upload"), &e),
        }
    }

    fn no_writable_tier(&self) -> Error {
        Error::NotSupported {
            store: self.to_string(),
            operation: "writes (no tier is written synchronously)",
        }
    }
}

impl fmt::Display for Tiered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.tiers.iter().enumerate() {
            if i > 0 {
                f.write_str(", then ")?;
            }
            t.store.fmt(f)?;
        }
        Ok(())
    }
}

/// Write one payload to several stores at once. Each store reads its own channel; a store that
/// drops its stream early (the blob exists, or it failed) stops being fed.
async fn put_blob_tee(
    stores: &[&Arc<dyn Store>],
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<PutOutcome> {
    let mut senders = Vec::with_capacity(stores.len());
    let mut puts = Vec::with_capacity(stores.len());
    for store in stores {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(TEE_DEPTH);
        senders.push(Some(tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        puts.push(store.put_blob(digest, size, Box::pin(stream)));
    }
    let pump = async move {
        while let Some(item) = payload.next().await {
            match item {
                Ok(chunk) => {
                    for slot in senders.iter_mut() {
                        if let Some(tx) = slot
                            && tx.send(Ok(chunk.clone())).await.is_err()
                        {
                            *slot = None;
                        }
                    }
                    if senders.iter().all(Option::is_none) {
                        return;
                    }
                }
                Err(e) => {
                    let mut original = Some(e);
                    for tx in senders.iter().flatten() {
                        let err = match original.take() {
                            Some(e) => e,
                            None => Error::Store {
                                store: "blob payload".into(),
                                message: "the payload failed (see the first tier's error)".into(),
                                temporary: false,
                                source: None,
                            },
                        };
                        let _ = tx.send(Err(err)).await;
                    }
                    return;
                }
            }
        }
        // Dropping the senders ends every stream.
    };
    let ((), results) = futures::future::join(pump, futures::future::join_all(puts)).await;
    let mut outcome = None;
    for r in results {
        let o = r?;
        outcome.get_or_insert(o);
    }
    Ok(outcome.unwrap_or(PutOutcome::Written))
}

#[async_trait]
impl Store for Tiered {
    /// The first tier's, except that SHA-256 blobs are accepted only when every tier takes
    /// them and none is written through a queue: the [`UploadQueue`] carries entries, so a
    /// standalone blob would never reach a queued tier. Callers that hold SHA-256 content
    /// otherwise keep it as entries (the REAPI CAS falls back to its entry layout).
    fn capability(&self) -> Capability {
        let mut cap = self.first().store.capability();
        cap.sha256 = self
            .tiers
            .iter()
            .all(|t| !matches!(t.write, TierWrite::Queued(_)) && t.store.capability().sha256);
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        for (i, t) in self.tiers.iter().enumerate() {
            match t.used().get_entry_opts(key, opts).await {
                Ok(Some(entry)) => {
                    if opts.record_access {
                        t.counters.hits.fetch_add(1, Ordering::Relaxed);
                        if i > 0 {
                            self.backfill(i, key, &entry).await;
                        }
                    }
                    return Ok(Some(entry));
                }
                Ok(None) => {
                    if opts.record_access {
                        t.counters.misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.is_not_found() => {
                    if opts.record_access {
                        t.counters.misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    t.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let mut outcome = None;
        for t in self.sync_tiers() {
            match t.used().put_entry_opts(key, entry, opts).await {
                Ok(o) => {
                    outcome.get_or_insert(o);
                }
                Err(e) => {
                    t.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        let Some(outcome) = outcome else {
            return Err(self.no_writable_tier());
        };
        if outcome == PutOutcome::Written {
            for t in &self.tiers {
                if let TierWrite::Queued(q) = &t.write {
                    self.enqueue(t, q, key).await;
                }
            }
        }
        Ok(outcome)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        // What the capability leaves out is refused by the tiered store as a whole, before
        // any tier holds part of it.
        self.check_hash_fn(std::slice::from_ref(digest))?;
        for (i, t) in self.tiers.iter().enumerate() {
            if i > 0 && self.blob_backfill {
                if t.used().find_missing(&[*digest]).await?.is_empty() {
                    let holder = self.backfill_blob(i, digest).await;
                    return self.tiers[holder].used().get_blob(digest).await;
                }
                continue;
            }
            if let Some(read) = t.used().get_blob(digest).await? {
                return Ok(Some(read));
            }
        }
        Ok(None)
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        self.check_hash_fn(std::slice::from_ref(digest))?;
        let stores: Vec<&Arc<dyn Store>> = self.sync_tiers().map(|t| t.used()).collect();
        match stores.as_slice() {
            [] => Err(self.no_writable_tier()),
            [one] => one.put_blob(digest, size, payload).await,
            many => put_blob_tee(many, digest, size, payload).await,
        }
    }

    /// The one tier written synchronously may take the file; several are written from it as
    /// a stream, as by [`Store::put_blob`].
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        self.check_hash_fn(std::slice::from_ref(digest))?;
        let stores: Vec<&Arc<dyn Store>> = self.sync_tiers().map(|t| t.used()).collect();
        match stores.as_slice() {
            [] => Err(self.no_writable_tier()),
            [one] => one.put_blob_file(digest, file).await,
            many => {
                let payload = crate::artifacts::file_stream(file.path()).await?;
                put_blob_tee(many, digest, file.size(), payload).await
            }
        }
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        self.check_hash_fn(std::slice::from_ref(digest))?;
        for (i, t) in self.tiers.iter().enumerate() {
            if i > 0 && self.blob_backfill {
                if t.used().find_missing(&[*digest]).await?.is_empty() {
                    let holder = self.backfill_blob(i, digest).await;
                    return self.tiers[holder]
                        .used()
                        .place_blob(digest, dest, how)
                        .await;
                }
                continue;
            }
            if t.used().place_blob(digest, dest, how).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.check_hash_fn(digests)?;
        let sync: Vec<&Tier> = self.sync_tiers().collect();
        match sync.as_slice() {
            [] => self.first().store.find_missing(digests).await,
            [one] => one.used().find_missing(digests).await,
            many => {
                let mut missing = HashSet::new();
                for t in many {
                    missing.extend(t.used().find_missing(digests).await?);
                }
                Ok(digests
                    .iter()
                    .filter(|d| missing.contains(*d))
                    .copied()
                    .collect())
            }
        }
    }

    /// Asked of each tier in turn, fastest first, for what the faster ones lack: present in
    /// any tier is present, since a read falls through to it (and backfills).
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        let mut missing = keys.to_vec();
        for t in &self.tiers {
            if missing.is_empty() {
                break;
            }
            missing = match t.used().find_missing_entries(&missing).await {
                Ok(m) => m,
                Err(e) => {
                    t.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            };
        }
        Ok(missing)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let mut any = false;
        for t in &self.tiers {
            if t.is_sync() && t.store.capability().delete {
                any |= t.used().delete(key).await?;
            }
        }
        Ok(any)
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        self.first().store.list()
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.first().store.stats().await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        self.first().store.trim(opts, progress).await
    }

    async fn flush(&self) -> Result<()> {
        let mut first_err = None;
        for t in &self.tiers {
            // A tier this run never called has nothing to flush: a remote behind a local hit
            // is not contacted at all.
            if !t.counters.used.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(e) = t.store.flush().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

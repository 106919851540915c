//! The read-through replica: a local store in front of an upstream one, built from the core
//! store layers (`larder_core::layer`, DESIGN.md §4).
//!
//! The store is `Tiered[local, BestEffort(upstream) through the upload queue]` with blob
//! backfill: reads are served locally; a local miss is read upstream and the entry and its blobs
//! are kept locally (the tiered store's backfill) and served. An upstream that fails or is slow
//! never fails a request: the best-effort layer makes its errors and time-outs misses, warns once
//! per outage, skips it while it is down and tries it again after [`RETRY_AFTER`].
//!
//! Writes go to the local store and the key is queued for upload ([`DurableQueue`], the tiered
//! store's [`UploadQueue`]): one small file per key in `DIR/upstream-queue/` holding the key,
//! written and fsynced (the file, then the directory) before the write is acknowledged and
//! removed once the upload succeeds, so the queue survives a restart and a power loss (it is
//! rescanned at start). `workers` tasks upload concurrently with [`copy_entry`]: blobs the
//! upstream lacks first, the entry last, so the upstream never names a blob it does not hold; a
//! failed upload stays queued and is retried with backoff.
//!
//! The files are the queue; the channel to the workers only carries up to [`QUEUE_CAPACITY`]
//! keys. A key that does not fit stays on disk only, and the workers rescan the directory once
//! the channel has drained, so a long upstream outage costs disk, not memory.
//!
//! With a budget of its own ([`ServerConfig::upstream_budget`](crate::ServerConfig)), the
//! upstream tier is trimmed to it by [`trim_loop`] on a timer (the remote store's trim lock
//! lets one of several servers sharing it trim at a time; the others skip that round).
//!
//! A queue file whose content does not name the key its file name stands for (empty or cut
//! short by a crash of an older version that did not fsync, or damaged) is never dropped
//! silently: the key cannot be known from the name (a hash), so the file is moved to
//! `upstream-queue/damaged/` and the log says so, naming it, at error level.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use larder_core::layer::{BestEffort, BestEffortConfig, Tier, Tiered, UploadQueue, copy_entry};
use larder_core::{Error, GetOptions, Key, PutOptions, Result, Store, TrimOptions};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// How long one call to the upstream (or a pause in a blob read from it) may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one whole blob transfer from the upstream may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an upstream that failed is left alone before one request tries it again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest wait between retries of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Keys the channel to the upload workers holds; the rest wait on disk (see the module docs).
pub(crate) const QUEUE_CAPACITY: usize = 4096;
/// Where queue files that name no key are moved.
const DAMAGED: &str = "damaged";

/// Upload progress of the queue.
#[derive(Debug, Default)]
struct QueueCounters {
    uploaded: AtomicU64,
    upload_failures: AtomicU64,
    queued: AtomicU64,
}

/// What the upstream's trims did.
#[derive(Debug, Default)]
struct TrimCounters {
    trims: AtomicU64,
    failures: AtomicU64,
    evicted_entries: AtomicU64,
    evicted_bytes: AtomicU64,
}

/// Fetch, upload and trim figures, for `/status` and `/metrics`.
#[derive(Debug)]
pub(crate) struct ReplicaCounters {
    queue: Arc<QueueCounters>,
    tiered: Arc<Tiered>,
    upstream: Arc<BestEffort<Arc<dyn Store>>>,
    trim: TrimCounters,
}

impl ReplicaCounters {
    /// Entries fetched from upstream on a local miss (the upstream tier's hits).
    pub(crate) fn fetched(&self) -> u64 {
        self.tiered.tier_stats().get(1).map_or(0, |t| t.hits)
    }
    /// Upstream reads that failed or timed out (and became misses).
    pub(crate) fn fetch_failures(&self) -> u64 {
        self.upstream.failures()
    }
    /// Entries uploaded.
    pub(crate) fn uploaded(&self) -> u64 {
        self.queue.uploaded.load(Ordering::Relaxed)
    }
    /// Failed upload attempts.
    pub(crate) fn upload_failures(&self) -> u64 {
        self.queue.upload_failures.load(Ordering::Relaxed)
    }
    /// Entries waiting for upload.
    pub(crate) fn queued(&self) -> u64 {
        self.queue.queued.load(Ordering::Relaxed)
    }
    /// The upstream's own budget, if it has one.
    pub(crate) fn upstream_budget(&self) -> Option<&TrimOptions> {
        self.tiered.tiers().get(1).and_then(|t| t.budget())
    }
    /// Trims of the upstream that ran, failed, and what they evicted (entries, bytes).
    pub(crate) fn trims(&self) -> (u64, u64, u64, u64) {
        let t = &self.trim;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            get(&t.trims),
            get(&t.failures),
            get(&t.evicted_entries),
            get(&t.evicted_bytes),
        )
    }
}

/// Trim the upstream to its own budget every `interval`, the first time one interval after
/// start; returns at once when it has no budget. A failed trim is a warning and is tried again
/// at the next interval.
pub(crate) async fn trim_loop(counters: Arc<ReplicaCounters>, interval: Duration) {
    if counters.upstream_budget().is_none() {
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        // The first tier has no budget of its own and the options set none: only the
        // upstream is trimmed here (the directory has its own clean-up).
        for t in counters
            .tiered
            .trim_tiers(&TrimOptions::default(), None)
            .await
        {
            let c = &counters.trim;
            match t.result {
                Ok(report) if report.skipped_locked => {
                    tracing::debug!(
                        "upstream trim skipped: another process is trimming {}",
                        t.name
                    );
                }
                Ok(report) => {
                    c.trims.fetch_add(1, Ordering::Relaxed);
                    c.evicted_entries
                        .fetch_add(report.evicted_entries, Ordering::Relaxed);
                    c.evicted_bytes
                        .fetch_add(report.evicted_bytes, Ordering::Relaxed);
                    tracing::info!(
                        "trimmed {}: evicted {} entries ({} bytes); {} entries ({} bytes) remain",
                        t.name,
                        report.evicted_entries,
                        report.evicted_bytes,
                        report.remaining_entries,
                        report.remaining_bytes
                    );
                }
                Err(e) => {
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("trim of the upstream {} failed: {e}", t.name);
                }
            }
        }
    }
}

/// A local store replicating from and to an upstream store: the store to serve, and its figures.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) store: Arc<Tiered>,
    pub(crate) counters: Arc<ReplicaCounters>,
}

impl Replica {
    /// A replica of `upstream` in `local`, queueing uploads under `dir/upstream-queue` and
    /// uploading with `workers` tasks (started here: call inside a tokio runtime).
    /// `budget`: the upstream's own trim budget ([`trim_loop`]), if any.
    pub(crate) fn start(
        local: Arc<dyn Store>,
        upstream: Arc<dyn Store>,
        dir: &Path,
        workers: usize,
        budget: &TrimOptions,
    ) -> Result<Replica> {
        let queue = Arc::new(DurableQueue::start(
            Arc::clone(&local),
            Arc::clone(&upstream),
            dir,
            workers,
            QUEUE_CAPACITY,
        )?);
        let config =
            BestEffortConfig::new(UPSTREAM_TIMEOUT, TRANSFER_TIMEOUT).retry_after(RETRY_AFTER);
        let guarded = Arc::new(BestEffort::with_config(upstream, config));
        let counters_queue = Arc::clone(&queue.counters);
        let upstream_tier = Tier::queued(guarded.clone(), queue).with_budget(budget.clone());
        let tiered = Tiered::new(vec![Tier::new(local), upstream_tier])?.with_blob_backfill(true);
        let tiered = Arc::new(tiered);
        let counters = Arc::new(ReplicaCounters {
            queue: counters_queue,
            tiered: Arc::clone(&tiered),
            upstream: guarded,
            trim: TrimCounters::default(),
        });
        Ok(Replica {
            store: tiered,
            counters,
        })
    }
}

/// The durable upload queue: one file per key under `DIR/upstream-queue/`, drained by workers.
#[derive(Debug)]
pub(crate) struct DurableQueue {
    queue_dir: PathBuf,
    feed: Feed,
    counters: Arc<QueueCounters>,
}

/// The bounded channel to the workers, and whether keys were left on disk only because it was
/// full.
#[derive(Debug, Clone)]
struct Feed {
    tx: mpsc::Sender<Key>,
    overflowed: Arc<AtomicBool>,
}

impl Feed {
    /// Hand `key` to the workers, or leave it to the next rescan when the channel is full.
    fn offer(&self, key: Key) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(key) {
            self.overflowed.store(true, Ordering::SeqCst);
        }
    }
}

/// What a file in the queue directory holds.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// A key to upload.
    Key(Key),
    /// A file that names no key; why.
    Damaged(String),
}

/// Read the queue file `path`: its content is the key, and its name that key's storage name.
fn read_item(path: &Path) -> Item {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let content = match std::fs::read(path) {
        Ok(c) => c,
        Err(e) => return Item::Damaged(format!("unreadable: {e}")),
    };
    let key = std::str::from_utf8(&content)
        .ok()
        .and_then(|k| Key::new(k.trim()).ok());
    // The name alone cannot say: a signature key is its own storage name, but any other key's
    // storage name is a hash that looks the same.
    match key {
        Some(key) if key.storage_name() == name => Item::Key(key),
        _ if content.is_empty() => Item::Damaged("empty".into()),
        _ => Item::Damaged(format!(
            "{} bytes that do not name the key its file name stands for",
            content.len()
        )),
    }
}

/// Up to `limit` keys queued under `queue_dir`, and whether there are more. Damaged items are
/// moved to `queue_dir/damaged/` with an error; files being written (`*.tmp`) are skipped.
fn scan(queue_dir: &Path, limit: usize) -> Result<(Vec<Key>, bool)> {
    let mut keys = Vec::new();
    for item in std::fs::read_dir(queue_dir)
        .map_err(|e| Error::io(format!("reading {}", queue_dir.display()), e))?
        .flatten()
    {
        let path = item.path();
        if !item.file_type().is_ok_and(|t| t.is_file())
            || path.extension().is_some_and(|e| e == "tmp")
        {
            continue;
        }
        if keys.len() == limit {
            return Ok((keys, true));
        }
        match read_item(&path) {
            Item::Key(key) => keys.push(key),
            Item::Damaged(why) => {
                let aside = queue_dir.join(DAMAGED);
                let moved = std::fs::create_dir_all(&aside)
                    .and_then(|()| std::fs::rename(&path, aside.join(item.file_name())));
                tracing::error!(
                    "upload queue item {} is {why}: the entry it stood for cannot be known and \
                     will not be uploaded; {}",
                    path.display(),
                    match moved {
                        Ok(()) => format!("moved to {}", aside.display()),
                        Err(e) => format!("and it cannot be moved aside: {e}"),
                    }
                );
            }
        }
    }
    Ok((keys, false))
}

/// The queue files under `queue_dir` (not read: only counted).
fn count_items(queue_dir: &Path) -> usize {
    std::fs::read_dir(queue_dir).map_or(0, |items| {
        items
            .flatten()
            .filter(|i| i.file_type().is_ok_and(|t| t.is_file()))
            .count()
    })
}

/// Remove what unfinished writes of a previous run left (`*.tmp`: never acknowledged, as a
/// write is acknowledged only once its queue file is in place).
fn remove_unfinished(queue_dir: &Path) -> Result<()> {
    for item in std::fs::read_dir(queue_dir)
        .map_err(|e| Error::io(format!("reading {}", queue_dir.display()), e))?
        .flatten()
    {
        let path = item.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            tracing::info!(
                "removing {}, an unacknowledged write's queue file",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

/// Write the queue file for `key` durably: a temporary file, fsynced, renamed into place, and
/// the directory fsynced. `Ok(false)` when it was queued already.
fn write_item(queue_dir: &Path, key: &Key) -> std::io::Result<bool> {
    use std::io::Write;
    let path = queue_dir.join(key.storage_name());
    if path.exists() {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(key.as_str().as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(queue_dir)?.sync_all()?;
    Ok(true)
}

impl DurableQueue {
    /// Open the queue under `dir/upstream-queue`, resume what a previous run left queued, and
    /// start `workers` upload tasks copying from `local` to `upstream`, fed through a channel of
    /// `capacity` keys.
    fn start(
        local: Arc<dyn Store>,
        upstream: Arc<dyn Store>,
        dir: &Path,
        workers: usize,
        capacity: usize,
    ) -> Result<DurableQueue> {
        let queue_dir = dir.join("upstream-queue");
        std::fs::create_dir_all(&queue_dir)
            .map_err(|e| Error::io(format!("creating {}", queue_dir.display()), e))?;
        let (tx, rx) = mpsc::channel::<Key>(capacity.max(1));
        let feed = Feed {
            tx,
            overflowed: Arc::new(AtomicBool::new(false)),
        };
        let counters = Arc::new(QueueCounters::default());
        // What a previous run left queued goes first.
        remove_unfinished(&queue_dir)?;
        let (pending, more) = scan(&queue_dir, capacity.max(1))?;
        let total = if more {
            count_items(&queue_dir)
        } else {
            pending.len()
        };
        if total > 0 {
            tracing::info!("resuming {total} queued uploads to {upstream}");
        }
        counters.queued.store(total as u64, Ordering::Relaxed);
        for key in pending {
            feed.offer(key);
        }
        if more {
            feed.overflowed.store(true, Ordering::SeqCst);
        }
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let worker = Uploader {
                local: Arc::clone(&local),
                upstream: Arc::clone(&upstream),
                queue_dir: queue_dir.clone(),
                feed: feed.clone(),
                counters: Arc::clone(&counters),
            };
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                while let Some(key) = worker.next(&rx).await {
                    worker.upload(key).await;
                }
            });
        }
        Ok(DurableQueue {
            queue_dir,
            feed,
            counters,
        })
    }
}

#[async_trait]
impl UploadQueue for DurableQueue {
    /// Queue `key` for upload, durably (fsynced before this returns).
    async fn enqueue(&self, key: &Key) -> Result<()> {
        let dir = self.queue_dir.clone();
        let k = key.clone();
        let written = tokio::task::spawn_blocking(move || write_item(&dir, &k))
            .await
            .map_err(|e| Error::io(format!("queueing {key} for upload"), e.into()))?
            .map_err(|e| Error::io(format!("queueing {key} for upload"), e))?;
        if written {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.feed.offer(key.clone());
        Ok(())
    }
}

/// One upload worker.
struct Uploader {
    local: Arc<dyn Store>,
    upstream: Arc<dyn Store>,
    queue_dir: PathBuf,
    feed: Feed,
    counters: Arc<QueueCounters>,
}

impl Uploader {
    /// The next key to upload: from the channel, or, once it has drained after keys were left
    /// on disk, from a rescan of the queue directory. `None` once the queue is gone.
    async fn next(&self, rx: &tokio::sync::Mutex<mpsc::Receiver<Key>>) -> Option<Key> {
        loop {
            let mut rx = rx.lock().await;
            match rx.try_recv() {
                Ok(key) => return Some(key),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if !self.feed.overflowed.swap(false, Ordering::SeqCst) {
                return rx.recv().await;
            }
            drop(rx);
            let dir = self.queue_dir.clone();
            let capacity = self.feed.tx.max_capacity();
            match tokio::task::spawn_blocking(move || scan(&dir, capacity)).await {
                Ok(Ok((keys, more))) => {
                    for key in keys {
                        self.feed.offer(key);
                    }
                    if more {
                        self.feed.overflowed.store(true, Ordering::SeqCst);
                    }
                }
                Ok(Err(e)) => tracing::warn!("upload queue: {e}"),
                Err(e) => tracing::warn!("upload queue: rescanning failed: {e}"),
            }
        }
    }

    async fn upload(&self, key: Key) {
        let item = self.queue_dir.join(key.storage_name());
        if !item.exists() {
            return; // a duplicate send of an item already uploaded
        }
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.try_upload(&key).await {
                Ok(()) => {
                    self.counters.uploaded.fetch_add(1, Ordering::Relaxed);
                    // A key sent twice (queued again, or found by a rescan while in flight)
                    // may be uploaded twice; only the first removal counts it out.
                    if std::fs::remove_file(&item).is_ok() {
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(e) => {
                    self.counters
                        .upload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if e.kind() == larder_core::ErrorKind::InvalidInput {
                        tracing::warn!("upstream {}: giving up on {key}: {e}", self.upstream);
                        if std::fs::remove_file(&item).is_ok() {
                            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                        }
                        return;
                    }
                    tracing::warn!(
                        "upstream {}: uploading {key} failed ({e}); retrying in {:.1} s",
                        self.upstream,
                        backoff.as_secs_f64()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Let other keys go first while this one waits.
                    if backoff >= Duration::from_secs(4) {
                        self.feed.offer(key);
                        return;
                    }
                }
            }
        }
    }

    async fn try_upload(&self, key: &Key) -> Result<()> {
        let mut opts = GetOptions::default();
        opts.record_access = false;
        let Some(entry) = self.local.get_entry_opts(key, opts).await? else {
            return Ok(()); // evicted or deleted locally meanwhile: nothing to send
        };
        // `None`: one of its blobs went, so the entry is being evicted; nothing to send.
        copy_entry(
            &*self.local,
            &*self.upstream,
            key,
            &entry,
            PutOptions::default(),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use larder_core::{Content, Entry, Output, OutputKind, StoreExt};
    use larder_fs::{FsConfig, FsStore};

    use super::*;

    fn fs(dir: &Path) -> Arc<dyn Store> {
        Arc::new(FsStore::open(dir, FsConfig::default()).expect("an fs store"))
    }

    async fn put(store: &dyn Store, name: &str) -> Key {
        let key = Key::new(name).expect("key");
        let mut entry = Entry::new(name, "test");
        entry.outputs.push(Output {
            path: "out".into(),
            kind: OutputKind::File {
                content: Content::inline(name.as_bytes().to_vec()),
                executable: false,
            },
        });
        store.put_entry(&key, &entry).await.expect("put");
        key
    }

    /// Wait (up to 20 s) until every key is in `store` and the queue holds no item.
    async fn drained(store: &dyn Store, keys: &[Key], queue: &DurableQueue) -> bool {
        for _ in 0..400 {
            let mut all = count_items(&queue.queue_dir) == 0
                && queue.counters.queued.load(Ordering::Relaxed) == 0;
            for k in keys {
                all &= store.get_entry(k).await.ok().flatten().is_some();
            }
            if all {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[test]
    fn damaged_items_are_moved_aside_not_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let q = dir.path();
        let good = Key::new("ccache/ab/cdef").expect("key");
        assert_eq!(write_item(q, &good).ok(), Some(true));
        assert_eq!(write_item(q, &good).ok(), Some(false), "queued once");
        // Cut short by a crash: empty files (one named by a signature key, one by a hash) and
        // a prefix of a key.
        let sig = "5e".repeat(32);
        std::fs::write(q.join(&sig), b"").expect("write");
        let cut = Key::new("bazel-ac/team/0123").expect("key");
        std::fs::write(q.join(cut.storage_name()), b"bazel-ac/te").expect("write");
        let empty = Key::new("dav/some/object").expect("key");
        std::fs::write(q.join(empty.storage_name()), b"").expect("write");
        // Being written right now: not an item yet.
        std::fs::write(q.join("x.tmp"), b"dav/x").expect("write");

        let (mut keys, more) = scan(q, 100).expect("scan");
        keys.sort();
        assert_eq!((keys, more), (vec![good.clone()], false));
        let mut aside: Vec<String> = std::fs::read_dir(q.join(DAMAGED))
            .expect("damaged items are kept")
            .flatten()
            .map(|i| i.file_name().to_string_lossy().into_owned())
            .collect();
        aside.sort();
        let mut want = vec![sig, cut.storage_name(), empty.storage_name()];
        want.sort();
        assert_eq!(aside, want);
        assert!(q.join("x.tmp").exists());
        // A limit leaves the rest for later.
        write_item(q, &empty).expect("queue item");
        let (keys, more) = scan(q, 1).expect("scan");
        assert_eq!((keys.len(), more), (1, true));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_backlog_larger_than_the_channel_is_all_uploaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = fs(&dir.path().join("local"));
        let upstream = fs(&dir.path().join("upstream"));
        let mut keys = Vec::new();
        for i in 0..40 {
            keys.push(put(local.as_ref(), &format!("k/{i}")).await);
        }
        // Left queued by a previous run: 20 items, more than the channel's 4.
        let queue_dir = dir.path().join("upstream-queue");
        std::fs::create_dir_all(&queue_dir).expect("queue dir");
        for k in &keys[..20] {
            write_item(&queue_dir, k).expect("queue item");
        }
        std::fs::write(queue_dir.join("left.tmp"), b"k/0").expect("write");
        let queue =
            DurableQueue::start(Arc::clone(&local), Arc::clone(&upstream), dir.path(), 2, 4)
                .expect("queue");
        assert!(
            !queue_dir.join("left.tmp").exists(),
            "unfinished write removed"
        );
        // And 20 more while it works.
        for k in &keys[20..] {
            queue.enqueue(k).await.expect("enqueue");
        }
        assert!(
            drained(upstream.as_ref(), &keys, &queue).await,
            "not everything was uploaded"
        );
        assert!(queue.counters.uploaded.load(Ordering::Relaxed) >= 40);
    }
}

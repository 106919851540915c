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
//! store's [`UploadQueue`]): one small file per key in `DIR/upstream-queue/`, written before the
//! write is acknowledged and removed once the upload succeeds, so the queue survives a restart
//! (it is rescanned at start). `workers` tasks upload concurrently with
//! [`copy_entry`]: blobs the upstream lacks first, the entry last, so the upstream never names a
//! blob it does not hold; a failed upload stays queued and is retried with backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use larder_core::layer::{BestEffort, BestEffortConfig, Tier, Tiered, UploadQueue, copy_entry};
use larder_core::{Error, GetOptions, Key, PutOptions, Result, Store};
use tokio::sync::mpsc;

/// How long one call to the upstream (or a pause in a blob read from it) may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one whole blob transfer from the upstream may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an upstream that failed is left alone before one request tries it again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest wait between retries of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Upload progress of the queue.
#[derive(Debug, Default)]
struct QueueCounters {
    uploaded: AtomicU64,
    upload_failures: AtomicU64,
    queued: AtomicU64,
}

/// Fetch and upload figures, for `/status` and `/metrics`.
#[derive(Debug)]
pub(crate) struct ReplicaCounters {
    queue: Arc<QueueCounters>,
    tiered: Arc<Tiered>,
    upstream: Arc<BestEffort<Arc<dyn Store>>>,
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
    pub(crate) fn start(
        local: Arc<dyn Store>,
        upstream: Arc<dyn Store>,
        dir: &Path,
        workers: usize,
    ) -> Result<Replica> {
        let queue = Arc::new(DurableQueue::start(
            Arc::clone(&local),
            Arc::clone(&upstream),
            dir,
            workers,
        )?);
        let config =
            BestEffortConfig::new(UPSTREAM_TIMEOUT, TRANSFER_TIMEOUT).retry_after(RETRY_AFTER);
        let guarded = Arc::new(BestEffort::with_config(upstream, config));
        let counters_queue = Arc::clone(&queue.counters);
        let tiered = Tiered::new(vec![Tier::new(local), Tier::queued(guarded.clone(), queue)])?
            .with_blob_backfill(true);
        let tiered = Arc::new(tiered);
        let counters = Arc::new(ReplicaCounters {
            queue: counters_queue,
            tiered: Arc::clone(&tiered),
            upstream: guarded,
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
    tx: mpsc::UnboundedSender<Key>,
    counters: Arc<QueueCounters>,
}

impl DurableQueue {
    /// Open the queue under `dir/upstream-queue`, resume what a previous run left queued, and
    /// start `workers` upload tasks copying from `local` to `upstream`.
    fn start(
        local: Arc<dyn Store>,
        upstream: Arc<dyn Store>,
        dir: &Path,
        workers: usize,
    ) -> Result<DurableQueue> {
        let queue_dir = dir.join("upstream-queue");
        std::fs::create_dir_all(&queue_dir)
            .map_err(|e| Error::io(format!("creating {}", queue_dir.display()), e))?;
        let (tx, rx) = mpsc::unbounded_channel::<Key>();
        let counters = Arc::new(QueueCounters::default());
        // What a previous run left queued goes first.
        let mut pending = 0u64;
        for item in std::fs::read_dir(&queue_dir)
            .map_err(|e| Error::io(format!("reading {}", queue_dir.display()), e))?
            .flatten()
        {
            let path = item.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|k| Key::new(k.trim()).ok())
            {
                Some(key) => {
                    pending += 1;
                    let _ = tx.send(key);
                }
                None => {
                    tracing::warn!("dropping unreadable upload queue item {}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        if pending > 0 {
            tracing::info!("resuming {pending} queued uploads to {upstream}");
        }
        counters.queued.store(pending, Ordering::Relaxed);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let worker = Uploader {
                local: Arc::clone(&local),
                upstream: Arc::clone(&upstream),
                queue_dir: queue_dir.clone(),
                tx: tx.clone(),
                counters: Arc::clone(&counters),
            };
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(key) = next else { break };
                    worker.upload(key).await;
                }
            });
        }
        Ok(DurableQueue {
            queue_dir,
            tx,
            counters,
        })
    }
}

#[async_trait]
impl UploadQueue for DurableQueue {
    /// Queue `key` for upload, durably.
    async fn enqueue(&self, key: &Key) -> Result<()> {
        let path = self.queue_dir.join(key.storage_name());
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, key.as_str())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::io(format!("queueing {key} for upload"), e))?;
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(key.clone());
        Ok(())
    }
}

/// One upload worker.
struct Uploader {
    local: Arc<dyn Store>,
    upstream: Arc<dyn Store>,
    queue_dir: PathBuf,
    tx: mpsc::UnboundedSender<Key>,
    counters: Arc<QueueCounters>,
}

impl Uploader {
    async fn upload(&self, key: Key) {
        let item = self.queue_dir.join(key.storage_name());
        if !item.exists() {
            return; // a duplicate send of an item already uploaded
        }
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.try_upload(&key).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&item);
                    self.counters.uploaded.fetch_add(1, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.counters
                        .upload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if e.kind() == larder_core::ErrorKind::InvalidInput {
                        tracing::warn!("upstream {}: giving up on {key}: {e}", self.upstream);
                        let _ = std::fs::remove_file(&item);
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
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
                        let _ = self.tx.send(key);
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

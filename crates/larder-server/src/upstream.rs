//! The read-through replica: a local store in front of an upstream one.
//!
//! [`Replica`] is a [`Store`]: reads are served locally; a local miss is fetched from the
//! upstream store (blobs first, then the entry), kept locally and served. Writes go to the
//! local store and the key is queued for upload: one small file per key in
//! `DIR/upstream-queue/`, written before the write is acknowledged and removed once the upload
//! succeeds, so the queue survives a restart (it is rescanned at start). `workers` tasks upload
//! concurrently; a failed upload stays queued and is retried with backoff. An upstream that
//! fails or is slow never fails a request: its errors are warnings and the local answer stands.
//!
//! Blob uploads skip what the upstream already has (`find_missing`); the entry goes last, so
//! the upstream never names a blob it does not hold.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreExt, StoreStats, TrimOptions, TrimReport,
};
use tokio::sync::mpsc;

/// How long a fetch from upstream may take before it counts as a miss.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait between retries of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Upload progress, for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ReplicaCounters {
    pub(crate) fetched: AtomicU64,
    pub(crate) fetch_failures: AtomicU64,
    pub(crate) uploaded: AtomicU64,
    pub(crate) upload_failures: AtomicU64,
    pub(crate) queued: AtomicU64,
}

/// A local store replicating from and to an upstream store.
pub(crate) struct Replica {
    local: Arc<dyn Store>,
    upstream: Arc<dyn Store>,
    queue_dir: PathBuf,
    tx: mpsc::UnboundedSender<Key>,
    pub(crate) counters: Arc<ReplicaCounters>,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("local", &self.local.to_string())
            .field("upstream", &self.upstream.to_string())
            .finish()
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (replica of {})", self.local, self.upstream)
    }
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
        let queue_dir = dir.join("upstream-queue");
        std::fs::create_dir_all(&queue_dir)
            .map_err(|e| Error::io(format!("creating {}", queue_dir.display()), e))?;
        let (tx, rx) = mpsc::unbounded_channel::<Key>();
        let counters = Arc::new(ReplicaCounters::default());
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
        Ok(Replica {
            local,
            upstream,
            queue_dir,
            tx,
            counters,
        })
    }

    /// Queue `key` for upload, durably.
    fn enqueue(&self, key: &Key) -> Result<()> {
        let path = self.queue_dir.join(key.storage_name());
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, key.as_str())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::io(format!("queueing {} for upload", key), e))?;
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(key.clone());
        Ok(())
    }

    /// Fetch `key` from upstream into the local store; `None` on a miss or any upstream
    /// failure (a warning).
    async fn fetch(&self, key: &Key) -> Option<Entry> {
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner(key)).await;
        match fetched {
            Ok(Ok(found)) => {
                if found.is_some() {
                    self.counters.fetched.fetch_add(1, Ordering::Relaxed);
                }
                found
            }
            Ok(Err(e)) => {
                self.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("upstream {}: fetching {key}: {e}", self.upstream);
                None
            }
            Err(_) => {
                self.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "upstream {}: fetching {key} took over {} s; a miss",
                    self.upstream,
                    FETCH_TIMEOUT.as_secs()
                );
                None
            }
        }
    }

    async fn fetch_inner(&self, key: &Key) -> Result<Option<Entry>> {
        let Some(entry) = self.upstream.get_entry(key).await? else {
            return Ok(None);
        };
        let digests = entry.blob_digests();
        for d in self.local.find_missing(&digests).await? {
            if !self.copy_blob_down(&d).await? {
                // The upstream names a blob it lacks: a miss.
                return Ok(None);
            }
        }
        self.local
            .put_entry_opts(key, &entry, PutOptions::create())
            .await?;
        Ok(Some(entry))
    }

    async fn copy_blob_down(&self, digest: &Digest) -> Result<bool> {
        let Some(read) = self.upstream.get_blob(digest).await? else {
            return Ok(false);
        };
        self.local.put_blob(digest, read.size, read.stream).await?;
        Ok(true)
    }
}

/// One upload worker.
struct Uploader {
    local: Arc<dyn Store>,
    upstream: Arc<dyn Store>,
    queue_dir: PathBuf,
    tx: mpsc::UnboundedSender<Key>,
    counters: Arc<ReplicaCounters>,
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
        let digests = entry.blob_digests();
        for d in self.upstream.find_missing(&digests).await? {
            let Some(read) = self.local.get_blob(&d).await? else {
                return Ok(()); // its blob went: the entry is being evicted
            };
            self.upstream.put_blob(&d, read.size, read.stream).await?;
        }
        self.upstream
            .put_entry_opts(key, &entry, PutOptions::default())
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for Replica {
    fn capability(&self) -> Capability {
        self.local.capability()
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        if let Some(e) = self.local.get_entry_opts(key, opts).await? {
            return Ok(Some(e));
        }
        Ok(self.fetch(key).await)
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let outcome = self.local.put_entry_opts(key, entry, opts).await?;
        if outcome == PutOutcome::Written {
            self.enqueue(key)?;
        }
        Ok(outcome)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        if let Some(read) = self.local.get_blob(digest).await? {
            return Ok(Some(read));
        }
        match self.copy_blob_down(digest).await {
            Ok(true) => self.local.get_blob(digest).await,
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::warn!("upstream {}: fetching blob {digest}: {e}", self.upstream);
                Ok(None)
            }
        }
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        self.local.put_blob(digest, size, payload).await
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        if self.local.find_missing(&[*digest]).await?.is_empty() {
            return self.local.place_blob(digest, dest, how).await;
        }
        if self.get_blob(digest).await?.is_none() {
            return Ok(false);
        }
        self.local.place_blob(digest, dest, how).await
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        // What is missing here may be upstream, and is fetched on read.
        let missing = self.local.find_missing(digests).await?;
        if missing.is_empty() {
            return Ok(missing);
        }
        match self.upstream.find_missing(&missing).await {
            Ok(m) => Ok(m),
            Err(e) => {
                tracing::warn!("upstream {}: find-missing: {e}", self.upstream);
                Ok(missing)
            }
        }
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.local.delete(key).await
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        self.local.list()
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.local.stats().await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        self.local.trim(opts, progress).await
    }

    async fn flush(&self) -> Result<()> {
        self.local.flush().await
    }
}

//! [`FsStore`]: the [`Store`] implementation over a local directory.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use larder_core::entry::{MAX_ENTRY_BYTES, now_ms};
use larder_core::store::ProgressFn;
use larder_core::trace::TraceOp;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, ErrorKind, GetOptions, Key,
    Placement, PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
    VerifiedFile,
};

use crate::config::FsConfig;
use crate::core::{
    Layout, is_newer_entry, is_standalone, remove_if_exists, standalone_name, touch,
};
use crate::error::Error as FsError;
use crate::hot::{FileId, HotEntries, Recent};
use crate::index::{Index, NewEntry};
use crate::reader::{self, ReadEvents, Source};
use crate::verified::{Seen, Verified};
use crate::writer::{BlobSink, BlobWritten, take_blob_file, write_entry};

/// Entry files larger than this are read and written on the blocking pool; smaller ones inline
/// (a spawn_blocking hop costs about as much as the I/O itself).
const INLINE_IO_BYTES: u64 = 256 * 1024;
/// Blobs up to this size are written inline (including the compression check, well under a
/// millisecond); larger ones stream through a blocking task.
const INLINE_BLOB_BYTES: u64 = 64 * 1024;
/// Blobs up to this size are read and verified in one go.
const SMALL_READ_BYTES: u64 = 64 * 1024;
/// Rows per page of [`Store::list`].
const LIST_PAGE: usize = 1000;
/// A trusted blob whose modification time is more recent than this is not touched again (see
/// [`Inner::blob_exists_touch`]): it keeps most of the trim's grace window either way.
const TOUCH_FRESH: Duration = Duration::from_secs(10);

/// What a store handle and its background tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) layout: Layout,
    config: FsConfig,
    pub(crate) index: Arc<Index>,
    hot: Option<HotEntries>,
    /// Blobs verified by this process, with their files' identities.
    pub(crate) verified: Option<Verified>,
    reads: ReadCounters,
}

/// Counters of blob reads (see [`BlobReads`]).
#[derive(Debug, Default)]
struct ReadCounters {
    trusted: AtomicU64,
    trusted_bytes: AtomicU64,
    verified: AtomicU64,
    hashed_bytes: AtomicU64,
    corrupt: AtomicU64,
}

/// How this store handle's blob reads went, since it was opened ([`FsStore::blob_reads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobReads {
    /// Reads of blobs whose file was the one verified before, unchanged: sent without hashing.
    pub trusted: u64,
    /// The sizes of those blobs.
    pub trusted_bytes: u64,
    /// Reads that verified the blob as it streamed (not trusted, or compressed).
    pub verified: u64,
    /// Bytes hashed by reads (a read that stops early hashed only what it read).
    pub hashed_bytes: u64,
    /// Blobs removed because a read found them damaged.
    pub corrupt: u64,
    /// Blobs in the record of verified files now (see [`FsConfig::verified_blobs`]).
    pub recorded: u64,
}

/// A blob read's reports: bytes hashed, and, at its end, verified (its file's identity is
/// recorded, for raw files) or corrupt (the blob is removed).
struct BlobEvents {
    inner: Arc<Inner>,
    digest: Digest,
    /// The identity of the raw file being read; `None` for a compressed one (never trusted).
    seen: Option<Seen>,
}

impl ReadEvents for BlobEvents {
    fn hashed(&self, bytes: u64) {
        self.inner
            .reads
            .hashed_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    fn verified(&self) {
        if let (Some(v), Some(seen)) = (&self.inner.verified, self.seen) {
            v.record(self.digest, seen);
        }
    }

    fn corrupt(&self) {
        self.inner.reads.corrupt.fetch_add(1, Ordering::Relaxed);
        self.inner.discard_blob(&self.digest);
    }
}

/// A larder cache in a local directory, shared safely by many processes.
///
/// See the [crate documentation](crate) for the layout, guarantees and performance.
pub struct FsStore {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl FsStore {
    /// Open (creating if needed) the cache directory `root`.
    ///
    /// The index is created, or rebuilt by scanning the directory, when it is missing or damaged.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created or read; [`Error::Store`] when the
    /// index cannot be opened (for example, written by a newer larder).
    pub fn open(root: impl Into<PathBuf>, config: FsConfig) -> Result<FsStore> {
        let layout = Layout::new(root.into());
        layout.create_dirs()?;
        let index = Arc::new(Index::open(&layout, !config.fsync)?);
        let interval = config
            .flush_interval
            .max(std::time::Duration::from_millis(1));
        let flusher = {
            let index = Arc::clone(&index);
            std::thread::Builder::new()
                .name("larder-fs-index".into())
                .spawn(move || index.run_flusher(interval))
                .map_err(|e| Error::io("starting the index flusher thread", e))?
        };
        Ok(FsStore {
            inner: Arc::new(Inner {
                verified: Verified::new(config.verified_blobs, &layout),
                layout,
                hot: HotEntries::new(config.hot_entry_bytes, config.hot_entry_recheck),
                reads: ReadCounters::default(),
                config,
                index,
            }),
            flusher: Some(flusher),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &FsConfig {
        &self.inner.config
    }

    /// How this handle's blob reads went: trusted (sent unhashed) or verified, bytes hashed,
    /// damaged blobs removed.
    pub fn blob_reads(&self) -> BlobReads {
        let r = &self.inner.reads;
        BlobReads {
            trusted: r.trusted.load(Ordering::Relaxed),
            trusted_bytes: r.trusted_bytes.load(Ordering::Relaxed),
            verified: r.verified.load(Ordering::Relaxed),
            hashed_bytes: r.hashed_bytes.load(Ordering::Relaxed),
            corrupt: r.corrupt.load(Ordering::Relaxed),
            recorded: self.inner.verified.as_ref().map_or(0, |v| v.len() as u64),
        }
    }

    /// What the handle shares with its reads, for this crate's tests.
    #[cfg(test)]
    pub(crate) fn inner_for_test(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Read every stored blob back and hash it, at most `rate` bytes (as stored) per second
    /// (`None`: as fast as one thread goes); remove the blobs that do not match their digests.
    /// `progress` shows how far it is and can stop it. Raw blobs found good are trusted by
    /// later reads of this handle while their files are unchanged (see the crate docs).
    ///
    /// # Errors
    /// [`Error::Io`] when the blob directory cannot be listed. A blob that cannot be read is
    /// logged and counted, not an error.
    pub async fn scrub(
        &self,
        rate: Option<u64>,
        progress: Arc<crate::ScrubProgress>,
    ) -> Result<crate::ScrubReport> {
        let inner = Arc::clone(&self.inner);
        blocking(move || crate::scrub::run(&inner, rate, &progress)).await
    }

    /// Rebuild the index from the files in the cache directory (entries are decoded; corrupt
    /// ones are removed). Hit counters are kept; per-entry hit counts and access times are
    /// reset (access times to the entry files' modification times).
    ///
    /// # Errors
    /// I/O and database errors.
    pub async fn rebuild_index(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.index.rebuild()).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::from(FsError::from(e)))?
}

impl Drop for FsStore {
    fn drop(&mut self) {
        // Best effort: write what is queued. Events of a killed process are lost (see docs).
        self.inner.index.stop();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fs:{}", self.inner.layout.root.display())
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.inner.layout.root)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The outcome of reading an entry file.
enum Loaded {
    Missing,
    Found(Entry),
    /// Written by a newer larder: a miss, but kept.
    Newer,
    /// Larger than [`FsConfig::max_entry_bytes`] (but within the format's limit): not read; a
    /// miss, but kept.
    TooLarge(u64),
    Corrupt(Error),
}

fn decode_file(mut file: File, len: u64, path: &Path, limit: u64) -> Result<Loaded> {
    if len > MAX_ENTRY_BYTES as u64 {
        return Ok(Loaded::Corrupt(Error::corrupt(
            "entry",
            "larger than the entry size limit",
        )));
    }
    if len > limit {
        return Ok(Loaded::TooLarge(len));
    }
    // Entry files are never changed in place (written under `tmp/`, then renamed), so the
    // length just read is the length: read exactly that, without a last read to see EOF.
    let mut buf = vec![0u8; len as usize];
    match file.read_exact(&mut buf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Loaded::Corrupt(Error::corrupt(
                "entry",
                "shorter than its length",
            )));
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    Ok(match Entry::decode(&buf) {
        Ok(e) => Loaded::Found(e),
        Err(_) if is_newer_entry(&buf) => Loaded::Newer,
        Err(e) => Loaded::Corrupt(e),
    })
}

impl Inner {
    /// Remove a blob that failed verification and record it.
    pub(crate) fn discard_blob(&self, digest: &Digest) {
        if let Some(v) = &self.verified {
            v.forget(digest);
        }
        if reader::discard_corrupt(&self.layout, digest) {
            self.index.record_blob_lost(*digest);
        }
    }

    /// [`Error::TooLarge`] for a blob over the configured `max_blob_bytes`.
    fn check_blob_size(&self, digest: &Digest, size: u64) -> Result<()> {
        match self.config.max_blob_bytes {
            Some(limit) if size > limit => Err(Error::TooLarge {
                what: format!("blob {digest}"),
                size,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Note a blob just written: its verified identity, and its row in the index.
    fn blob_published(&self, digest: &Digest, written: &BlobWritten) {
        if let (Some(v), Some(seen)) = (&self.verified, written.seen) {
            v.record(*digest, seen);
        }
        if is_standalone(digest) {
            self.index
                .record_standalone(digest, written.len, written.ino);
        } else {
            self.index.record_blob_written(*digest, written.stored);
        }
    }

    /// Whether blob `digest` exists (either form), refreshing its modification time if so.
    ///
    /// A blob this process trusts (see [`crate::verified`]) and refreshed less than
    /// [`TOUCH_FRESH`] ago is left alone: a touch moves its change time, so it would lose its
    /// trust and be hashed on its next read, and it is still within the trim's grace window.
    ///
    /// A standalone (SHA-256) blob is not touched: nothing refcounts it, so it needs no grace
    /// window; it is recorded as accessed in the index instead (its place in the eviction
    /// order), and its file keeps the identity a trusted read checks.
    fn blob_exists_touch(&self, digest: &Digest) -> Result<bool> {
        if is_standalone(digest) {
            let here = self.standalone_exists(digest)?;
            if here {
                self.index
                    .record_touches([standalone_name(digest).as_str()]);
            }
            return Ok(here);
        }
        for compressed in [false, true] {
            let p = self.layout.blob_path(digest, compressed);
            if !compressed && self.verified.as_ref().is_some_and(|v| v.contains(digest)) {
                match std::fs::metadata(&p) {
                    Ok(m) if modified_within(&m, TOUCH_FRESH) => return Ok(true),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
                }
            }
            if touch(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether standalone blob `digest` exists (either form): a `stat`, no touch.
    fn standalone_exists(&self, digest: &Digest) -> Result<bool> {
        for compressed in [false, true] {
            let p = self.layout.blob_path(digest, compressed);
            match std::fs::symlink_metadata(&p) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
            }
        }
        Ok(false)
    }

    /// [`Inner::blob_exists_touch`] for each of `digests`, with the accesses to standalone
    /// blobs recorded in one batch (a find-missing of thousands takes the queue's lock once).
    fn blobs_exist_touch(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let mut found = Vec::new();
        let present = digests
            .iter()
            .map(|d| {
                if !is_standalone(d) {
                    return self.blob_exists_touch(d);
                }
                let here = self.standalone_exists(d)?;
                if here {
                    found.push(standalone_name(d));
                }
                Ok(here)
            })
            .collect::<Result<Vec<bool>>>()?;
        if !found.is_empty() {
            self.index.record_touches(found.iter().map(String::as_str));
        }
        Ok(present)
    }

    /// Which of the entry files `names` exist; those that do are recorded as accessed.
    fn entries_exist_touch(&self, names: &[String]) -> Result<Vec<bool>> {
        let present = names
            .iter()
            .map(|name| {
                let path = self.layout.entry_path(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
                }
            })
            .collect::<Result<Vec<bool>>>()?;
        self.index.record_touches(
            names
                .iter()
                .zip(&present)
                .filter(|(_, here)| **here)
                .map(|(name, _)| name.as_str()),
        );
        Ok(present)
    }

    /// Open an entry file and read its identity; `None` if there is none.
    fn open_entry(&self, path: &Path) -> Result<Option<(File, FileId)>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Some((file, FileId::of(&meta))))
    }

    /// The entry of `key`, held in memory but not checked within the recheck interval, if its
    /// file at `path` is unchanged since it was decoded (one `stat`); `Some(None)` if the file
    /// is gone; `None` when the file must be read.
    fn stale_hot_entry(&self, key: &str, path: &Path) -> Option<Option<Entry>> {
        let hot = self.hot.as_ref()?;
        match std::fs::metadata(path) {
            Ok(meta) => hot.get(key, FileId::of(&meta)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                hot.remove(key);
                Some(None)
            }
            Err(_) => None,
        }
    }

    /// Count a hit on the entry of `key`, stored as `name`, when `opts` asks for it.
    fn record_hit(&self, key: &Key, name: &str, entry: &Entry, opts: &GetOptions) {
        if opts.record_access {
            self.index
                .record_hit(name, entry.total_size(), entry.cost_ms);
            if let Some(t) = &self.config.trace {
                t.record(TraceOp::GetHit, key, entry.total_size(), entry.cost_ms);
            }
        }
    }
}

/// Whether `m`'s modification time is less than `window` ago (or in the future).
fn modified_within(m: &std::fs::Metadata, window: Duration) -> bool {
    match m.modified().map(|t| SystemTime::now().duration_since(t)) {
        Ok(Ok(age)) => age < window,
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// Lists this long or shorter are checked inline on the caller's task (a few `stat`s cost less
/// than a hop to the blocking pool).
const CHECK_INLINE: usize = 64;
/// The shortest share of a long list given to one blocking thread: below this, another thread
/// costs more than it saves.
const CHECK_SHARE: usize = 1024;

/// `check` (one syscall or two per item, no other waits) over `items`, results in order. Long
/// lists are split between up to as many blocking threads as there are cores, so a bulk
/// existence check of thousands (REAPI's FindMissingBlobs) is not held to one core; a request
/// holds at most that many threads.
async fn check_many<T, F>(inner: &Arc<Inner>, items: Vec<T>, check: F) -> Result<Vec<bool>>
where
    T: Send + Sync + 'static,
    F: Fn(&Inner, &[T]) -> Result<Vec<bool>> + Send + Sync + 'static,
{
    if items.len() <= CHECK_INLINE {
        return check(inner, &items);
    }
    // Asked once: on Linux the answer reads the cgroup's CPU quota from files.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    let shares = (items.len() / CHECK_SHARE).clamp(1, cores);
    let (items, check) = (Arc::new(items), Arc::new(check));
    let per = items.len().div_ceil(shares);
    let mut tasks = Vec::with_capacity(shares);
    for start in (0..items.len()).step_by(per) {
        let (inner, items, check) = (Arc::clone(inner), Arc::clone(&items), Arc::clone(&check));
        let end = (start + per).min(items.len());
        tasks.push(blocking(move || check(&inner, &items[start..end])));
    }
    let mut out = Vec::with_capacity(items.len());
    for share in futures::future::join_all(tasks).await {
        out.extend(share?);
    }
    Ok(out)
}

/// Refresh the modification time of each blob (see [`Inner::blob_exists_touch`]); whether each
/// exists.
async fn touch_blobs(inner: &Arc<Inner>, digests: Vec<Digest>) -> Result<Vec<bool>> {
    check_many(inner, digests, Inner::blobs_exist_touch).await
}

impl FsStore {
    /// Write blob `digest` from `payload` (its size and presence already checked), hashing it
    /// on the way, and publish it.
    async fn write_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut payload: ByteStream,
    ) -> Result<PutOutcome> {
        let inner = &self.inner;
        let (compression, fsync) = (inner.config.compression, inner.config.fsync);
        let written = if size <= INLINE_BLOB_BYTES {
            let mut sink = BlobSink::new(&inner.layout, *digest, size, compression, fsync)?;
            while let Some(chunk) = payload.next().await {
                sink.write(&chunk?)?;
            }
            sink.finish(&inner.layout)?
        } else {
            // The writer runs on the blocking pool; a small channel bounds memory to a few
            // chunks and lets reading the payload overlap with hashing and writing.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(4);
            let (inner2, d) = (Arc::clone(inner), *digest);
            let writer = tokio::task::spawn_blocking(move || {
                let mut sink = BlobSink::new(&inner2.layout, d, size, compression, fsync)?;
                sink.hash_in_background()?;
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Some(chunk) => sink.write_bytes(chunk)?,
                        // The payload failed: drop the sink, which removes its file.
                        None => return Err(Error::invalid("blob upload aborted")),
                    }
                }
                sink.finish(&inner2.layout)
            });
            let mut feed_err = None;
            while let Some(item) = payload.next().await {
                match item {
                    Ok(chunk) => {
                        if tx.send(Some(chunk)).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(None).await;
                        feed_err = Some(e);
                        break;
                    }
                }
            }
            drop(tx);
            let res = writer.await.map_err(|e| Error::from(FsError::from(e)))?;
            if let Some(e) = feed_err {
                return Err(e);
            }
            res?
        };
        inner.blob_published(digest, &written);
        Ok(PutOutcome::Written)
    }
}

#[async_trait]
impl Store for FsStore {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.list = true;
        cap.delete = true;
        cap.trim = true;
        cap.hit_stats = true;
        cap.local_files = true;
        cap.sha256 = true;
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let inner = &self.inner;
        let recent = match &inner.hot {
            Some(hot) => hot.recent(key.as_str()),
            None => Recent::Absent,
        };
        let stale = match recent {
            Recent::Fresh(entry, name) => {
                inner.record_hit(key, &name, &entry, &opts);
                return Ok(Some(entry));
            }
            Recent::Stale => true,
            Recent::Absent => false,
        };
        let name = key.storage_name();
        let path = inner.layout.entry_path(&name);
        let held = if stale {
            inner.stale_hot_entry(key.as_str(), &path)
        } else {
            None
        };
        let loaded = match held {
            Some(Some(entry)) => Loaded::Found(entry),
            Some(None) => Loaded::Missing,
            None => match inner.open_entry(&path)? {
                None => Loaded::Missing,
                Some((file, id)) => {
                    let len = id.len();
                    let loaded = if len <= INLINE_IO_BYTES {
                        decode_file(file, len, &path, inner.config.max_entry_bytes)?
                    } else {
                        let path2 = path.clone();
                        let limit = inner.config.max_entry_bytes;
                        blocking(move || decode_file(file, len, &path2, limit)).await?
                    };
                    if let (Loaded::Found(entry), Some(hot)) = (&loaded, &inner.hot) {
                        hot.insert(key.as_str(), &name, id, entry);
                    }
                    loaded
                }
            },
        };
        match loaded {
            Loaded::Found(entry) => {
                inner.record_hit(key, &name, &entry, &opts);
                Ok(Some(entry))
            }
            Loaded::TooLarge(len) => {
                tracing::debug!(
                    "larder: entry {key} not read: {len} bytes, over the limit of {}",
                    inner.config.max_entry_bytes
                );
                if opts.record_access {
                    inner.index.record_miss();
                }
                Ok(None)
            }
            Loaded::Missing | Loaded::Newer => {
                if opts.record_access {
                    inner.index.record_miss();
                    if let Some(t) = &inner.config.trace {
                        t.record(TraceOp::GetMiss, key, 0, 0);
                    }
                }
                Ok(None)
            }
            Loaded::Corrupt(e) => {
                tracing::warn!("larder: removing corrupt entry {key} ({e})");
                if let Some(hot) = &inner.hot {
                    hot.remove(key.as_str());
                }
                if remove_if_exists(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?
                {
                    inner.index.record_remove(name);
                }
                if opts.record_access {
                    inner.index.record_miss();
                    if let Some(t) = &inner.config.trace {
                        t.record(TraceOp::GetMiss, key, 0, 0);
                    }
                }
                Ok(None)
            }
        }
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let inner = &self.inner;
        let bytes = entry.encode()?;
        let blobs = entry.blob_digests();
        // Refresh the blobs' modification times: a concurrent trim keeps them (grace window)
        // until this entry's reference reaches the index.
        let present = touch_blobs(inner, blobs.clone()).await?;
        for (d, _) in blobs.iter().zip(present).filter(|(_, here)| !here) {
            tracing::debug!("larder: entry {key} names blob {d}, which the store lacks");
        }
        let name = key.storage_name();
        let dest = inner.layout.entry_path(&name);
        let fsync = inner.config.fsync;
        let file_size = bytes.len() as u64;
        let written = if file_size <= INLINE_IO_BYTES {
            write_entry(&inner.layout, &dest, &bytes, opts.mode, fsync)?
        } else {
            let (inner2, dest2, mode) = (Arc::clone(inner), dest.clone(), opts.mode);
            blocking(move || write_entry(&inner2.layout, &dest2, &bytes, mode, fsync)).await?
        };
        if written.outcome == PutOutcome::Written {
            if let Some(hot) = &inner.hot {
                hot.remove(key.as_str());
            }
            if let Some(t) = &inner.config.trace {
                t.record(TraceOp::Put, key, entry.total_size(), entry.cost_ms);
            }
            inner.index.record_insert(NewEntry {
                name,
                file_size,
                ino: written.ino,
                created_ms: entry.created_ms,
                cost_ms: entry.cost_ms,
                blobs,
                at_ms: now_ms(),
            });
        }
        Ok(written.outcome)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let inner = &self.inner;
        let Some(loc) = reader::locate(&inner.layout, digest)? else {
            return Ok(None);
        };
        if is_standalone(digest) {
            inner
                .index
                .record_touches([standalone_name(digest).as_str()]);
        }
        let digest = *digest;
        let seen = loc.seen;
        if !loc.compressed
            && inner
                .verified
                .as_ref()
                .is_some_and(|v| v.trusts(&digest, &seen.id))
        {
            // The file verified before, unchanged since: sent as it is (see crate::verified).
            let size = loc.file_len;
            inner.reads.trusted.fetch_add(1, Ordering::Relaxed);
            inner.reads.trusted_bytes.fetch_add(size, Ordering::Relaxed);
            let stream: ByteStream = if size <= SMALL_READ_BYTES {
                let item = reader::read_trusted(&loc.file, &digest, size);
                if item.is_err() {
                    // Shorter than when it was opened: written since; the next read verifies.
                    if let Some(v) = &inner.verified {
                        v.forget(&digest);
                    }
                }
                Box::pin(futures::stream::once(async move { item }))
            } else {
                reader::stream_trusted(loc.file, digest, size)
            };
            return Ok(Some(BlobRead { size, stream }));
        }
        let raw = !loc.compressed;
        let (src, size) = match Source::open(loc, &digest) {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                tracing::warn!("larder: {e}");
                inner.reads.corrupt.fetch_add(1, Ordering::Relaxed);
                inner.discard_blob(&digest);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        inner.reads.verified.fetch_add(1, Ordering::Relaxed);
        let events = BlobEvents {
            inner: Arc::clone(inner),
            digest,
            seen: raw.then_some(seen),
        };
        let stream: ByteStream = if size <= SMALL_READ_BYTES {
            let item = reader::read_small(src, digest, size, &events);
            Box::pin(futures::stream::once(async move { item }))
        } else {
            reader::stream(src, digest, size, Box::new(events))
        };
        Ok(Some(BlobRead { size, stream }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        let inner = &self.inner;
        inner.check_blob_size(digest, size)?;
        if inner.blob_exists_touch(digest)? {
            return Ok(PutOutcome::Exists);
        }
        self.write_blob(digest, size, payload).await
    }

    /// Renamed into place when stored raw on the same file system (see
    /// [`take_blob_file`](crate::writer::take_blob_file)); otherwise written as by `put_blob`.
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        let inner = &self.inner;
        inner.check_blob_size(digest, file.size())?;
        if inner.blob_exists_touch(digest)? {
            return Ok(PutOutcome::Exists);
        }
        let (inner2, d, f) = (Arc::clone(inner), *digest, file.clone());
        let taken = blocking(move || {
            let config = &inner2.config;
            let (path, size) = (f.path(), f.size());
            take_blob_file(
                &inner2.layout,
                &d,
                path,
                size,
                config.compression,
                config.fsync,
            )
        })
        .await?;
        match taken {
            Some(written) => {
                inner.blob_published(digest, &written);
                Ok(PutOutcome::Written)
            }
            None => {
                let payload = larder_core::artifacts::file_stream(file.path()).await?;
                self.write_blob(digest, file.size(), payload).await
            }
        }
    }
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let (inner, digest, dest) = (Arc::clone(&self.inner), *digest, dest.to_path_buf());
        blocking(move || {
            crate::place::place(&inner.layout, &digest, &dest, how, &|| {
                inner.discard_blob(&digest)
            })
        })
        .await
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        // Touching present blobs protects them from a concurrent trim until the entry that is
        // about to name them is indexed (see the grace window in the crate docs).
        let present = touch_blobs(&self.inner, digests.to_vec()).await?;
        Ok(digests
            .iter()
            .zip(present)
            .filter_map(|(d, here)| (!here).then_some(*d))
            .collect())
    }

    /// One `stat` per key, no open and no decode: an entry file exists only once complete
    /// (published by rename after its blobs), and no trim removes a blob that a remaining entry
    /// names. Present entries count as accessed for eviction, not as hits. (A blob removed for
    /// failing verification leaves the entries naming it present here; reading them is a miss.)
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        let names: Vec<String> = keys.iter().map(Key::storage_name).collect();
        let present = check_many(&self.inner, names, Inner::entries_exist_touch).await?;
        Ok(keys
            .iter()
            .zip(present)
            .filter(|(_, here)| !here)
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let name = key.storage_name();
        let path = self.inner.layout.entry_path(&name);
        let removed = remove_if_exists(&path)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        if let Some(hot) = &self.inner.hot {
            hot.remove(key.as_str());
        }
        if removed {
            self.inner.index.record_remove(name);
        }
        Ok(removed)
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let inner = Arc::clone(&self.inner);
        let pages =
            futures::stream::unfold(Some((inner, None::<String>, true)), |state| async move {
                let (inner, after, first) = state?;
                let res = blocking(move || {
                    if first {
                        inner.index.flush()?;
                    }
                    let page = inner.index.list_page(after.as_deref(), LIST_PAGE)?;
                    Ok((inner, page))
                })
                .await;
                match res {
                    Ok((inner, page)) => {
                        let next = (page.len() == LIST_PAGE)
                            .then(|| page.last().map(|m| (inner, Some(m.name.clone()), false)))
                            .flatten();
                        let items: Vec<Result<EntryMeta>> = page.into_iter().map(Ok).collect();
                        Some((futures::stream::iter(items), next))
                    }
                    Err(e) => Some((futures::stream::iter(vec![Err(e)]), None)),
                }
            });
        Box::pin(pages.flatten())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.index.flush()?;
            inner.index.stats()
        })
        .await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        let (inner, opts) = (Arc::clone(&self.inner), opts.clone());
        blocking(move || {
            let report = crate::trim::run(
                &inner.layout,
                &inner.index,
                inner.config.eviction.as_deref(),
                &opts,
                progress,
            )?;
            // What the trim removed must not be served from memory.
            if report.evicted_entries > 0
                && !report.dry_run
                && let Some(hot) = &inner.hot
            {
                hot.clear();
            }
            Ok(report)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.index.flush_quick()).await
    }
}

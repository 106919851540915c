//! The storage contract every backend implements.
//!
//! [`Store`] is the small, object-safe contract for implementors; callers use it through
//! `dyn Store` (the CLI and server choose a backend at run time) and through the helpers in
//! [`crate::artifacts`], which turn files on disk into entries and back.
//!
//! Blobs are always streams of chunks ([`ByteStream`]); nothing in the contract asks a store to
//! hold a whole blob in memory. Entries are small documents and travel as values.

use std::fmt::{Debug, Display};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashFn};
use crate::entry::Entry;
use crate::error::Result;
use crate::key::Key;

/// A stream of byte chunks: how blobs are read and written.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The size of the chunks larder's own streams produce.
pub const CHUNK_SIZE: usize = 1 << 20;

/// What a store can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capability {
    /// [`Store::list`] enumerates entries with their metadata.
    pub list: bool,
    /// [`Store::delete`] removes entries.
    pub delete: bool,
    /// [`Store::trim`] enforces budgets.
    pub trim: bool,
    /// [`Store::stats`] reports hits and misses (not only sizes).
    pub hit_stats: bool,
    /// Blobs live in local files, so [`Store::place_blob`] can reflink, copy or hard-link them.
    pub local_files: bool,
    /// Blobs named by SHA-256 digests ([`HashFn::Sha256`]) are held as they are, each a
    /// standalone blob kept until it is trimmed (not only while an entry names it). BLAKE3
    /// blobs every store holds. A store without it refuses SHA-256 digests in every blob
    /// method with [`Error::NotSupported`](crate::Error::NotSupported)
    /// ([`check_hash_fn`]).
    #[serde(default)]
    pub sha256: bool,
}

impl Capability {
    /// A capability set with every flag off.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether the store holds blobs of digests of `func`.
    pub fn accepts(&self, func: HashFn) -> bool {
        match func {
            HashFn::Blake3 => true,
            HashFn::Sha256 => self.sha256,
        }
    }
}

/// [`Error::NotSupported`](crate::Error::NotSupported) unless `cap` (`store`'s capability)
/// accepts the function of every digest in `digests`: how a store refuses blobs of a function
/// it cannot hold, before it touches anything.
///
/// # Errors
/// The refusal, naming the store and the function.
pub fn check_hash_fn<'a>(
    store: &dyn Display,
    cap: Capability,
    digests: impl IntoIterator<Item = &'a Digest>,
) -> Result<()> {
    match digests.into_iter().find(|d| !cap.accepts(d.func())) {
        None => Ok(()),
        Some(d) => Err(crate::Error::NotSupported {
            store: store.to_string(),
            operation: match d.func() {
                HashFn::Blake3 => "BLAKE3 blobs",
                HashFn::Sha256 => "SHA-256 blobs",
            },
        }),
    }
}

/// Options for reading an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// Count this read as an access (hit or miss) for eviction and statistics. Off for
    /// inspection tools that must not disturb LRU order.
    pub record_access: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self {
            record_access: true,
        }
    }
}

/// How a write behaves when the key already holds an entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutMode {
    /// Replace the existing entry (last writer wins, atomically).
    #[default]
    Overwrite,
    /// Keep the existing entry; the write is a no-op reported as [`PutOutcome::Exists`].
    Create,
}

/// Options for writing an entry or blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// What to do when the key exists.
    pub mode: PutMode,
}

impl PutOptions {
    /// Create-only writes.
    pub fn create() -> Self {
        Self {
            mode: PutMode::Create,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry or blob was written.
    Written,
    /// It already existed and was kept.
    Exists,
}

/// How a blob is placed into a destination file by [`Store::place_blob`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Placement {
    /// Reflink (copy-on-write clone) where the filesystem can, else copy.
    #[default]
    Copy,
    /// Hard-link to the cache's file where possible (read-only, same device, uncompressed);
    /// else copy. Only safe for builds that never rewrite outputs in place.
    Hardlink,
}

/// A blob being read: its size, and a stream of verified chunks.
///
/// The stream yields the blob's bytes; if they turn out not to match the digest, the last item
/// is an [`Error::Corrupt`](crate::Error::Corrupt) and the store removes the blob. Consumers that
/// must never expose unverified bytes (restoring outputs) write to a temporary file and publish it
/// only after the stream ends cleanly.
pub struct BlobRead {
    /// The blob's length in bytes.
    pub size: u64,
    /// Its chunks.
    pub stream: ByteStream,
}

impl Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .finish()
    }
}

/// Metadata of one stored entry, as listed by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// The key's [storage name](Key::storage_name).
    pub name: String,
    /// Bytes the entry accounts for (its document plus its blobs).
    pub size: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last access time, ms since the epoch.
    pub last_access_ms: u64,
    /// Number of hits.
    pub hits: u64,
    /// Recompute cost in ms.
    pub cost_ms: u64,
}

/// Usage figures of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Entries stored.
    pub entries: u64,
    /// Bytes stored (entries and blobs, as stored: after compression).
    pub bytes: u64,
    /// Entry reads that found an entry.
    pub hits: u64,
    /// Entry reads that found nothing.
    pub misses: u64,
    /// Output bytes served by hits.
    pub bytes_saved: u64,
    /// Recompute time saved by hits, in ms (sum of the hit entries' `cost_ms`).
    pub ms_saved: u64,
}

impl StoreStats {
    /// hits / (hits + misses), or 0 when there were no reads.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Budgets a trim enforces. Unset budgets are not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrimOptions {
    /// Keep the store at or under this many bytes.
    pub max_bytes: Option<u64>,
    /// Keep at most this many entries.
    pub max_entries: Option<u64>,
    /// When the disk holding the store has less free space than this ...
    pub min_free_bytes: Option<u64>,
    /// ... evict until it has at least this much (defaults to `min_free_bytes`).
    pub max_free_bytes: Option<u64>,
    /// Report what would go without removing anything.
    pub dry_run: bool,
    /// Wait for another process's trim to finish instead of skipping.
    pub wait_for_lock: bool,
}

impl TrimOptions {
    /// Whether any budget is set.
    pub fn has_budget(&self) -> bool {
        self.max_bytes.is_some() || self.max_entries.is_some() || self.min_free_bytes.is_some()
    }
}

/// What a trim did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimReport {
    /// Entries removed (or that would be, on a dry run).
    pub evicted_entries: u64,
    /// Bytes freed (or that would be).
    pub evicted_bytes: u64,
    /// Entries left.
    pub remaining_entries: u64,
    /// Bytes left.
    pub remaining_bytes: u64,
    /// Another process held the trim lock, so this trim did nothing.
    pub skipped_locked: bool,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// On a dry run, the [storage names](Key::storage_name) of the entries that would be
    /// evicted, in eviction order (empty when the store cannot tell).
    #[serde(default)]
    pub victims: Vec<String>,
}

/// Called as a long operation (trim, large transfer) makes progress: `(done, total)`.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A local file whose bytes the caller has already hashed and found to be the blob it is put
/// as: the argument of [`Store::put_blob_file`].
///
/// Constructing one is the caller's promise that the file holds exactly `size` bytes that hash
/// to the digest it is put under, and that nobody else writes to it. A store that keeps blobs in
/// local files may then take the file as it is, without reading or hashing it again. Larder
/// makes one only for its own temporary files (an upload received and hashed as it arrived).
#[derive(Debug, Clone)]
pub struct VerifiedFile {
    path: PathBuf,
    size: u64,
}

impl VerifiedFile {
    /// The file at `path`, of `size` bytes, already verified by the caller (see the type).
    pub fn new(path: impl Into<PathBuf>, size: u64) -> Self {
        VerifiedFile {
            path: path.into(),
            size,
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The contract every larder store implements.
///
/// # Contract
/// - Keys arrive validated ([`Key`]); stores MUST derive file or object names from
///   [`Key::storage_name`] and blob digests only, never from caller strings.
/// - Writes MUST be atomic: a reader sees the whole entry or blob, or nothing, even if the
///   writer crashes. Blobs are written before the entry that names them.
/// - Reads MUST verify: an entry that does not decode is a miss (and is removed); blob bytes that
///   do not hash to their digest are never presented as good data.
/// - Blobs MUST stream: no method holds a whole blob in memory.
/// - Concurrent writers of one key MUST leave one complete entry (any of theirs).
/// - Methods a store cannot support return [`Error::NotSupported`](crate::Error::NotSupported),
///   and [`Store::capability`] says so up front.
#[async_trait]
pub trait Store: Display + Debug + Send + Sync + 'static {
    /// What this store can do.
    fn capability(&self) -> Capability;

    /// Read the entry under `key`.
    ///
    /// # Behavior
    /// - `Ok(None)` when there is none (counted as a miss if `record_access`).
    /// - An entry that fails to decode or validate is removed and reported as `Ok(None)`.
    /// - Does not check that the entry's blobs exist; restoring does.
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>>;

    /// Store `entry` under `key`.
    ///
    /// # Behavior
    /// - Validates the entry ([`Entry::validate`]) and rejects it if unsafe.
    /// - The caller MUST have stored every blob the entry names first.
    /// - Atomic; with [`PutMode::Create`] an existing entry is kept.
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome>;

    /// Read a blob as a stream of verified chunks (see [`BlobRead`]).
    ///
    /// # Behavior
    /// - `Ok(None)` when the blob is missing.
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>>;

    /// Write a blob of `size` bytes whose digest (BLAKE3, or SHA-256 where
    /// [`Capability::sha256`]) is `digest`, from a stream.
    ///
    /// # Behavior
    /// - The bytes MUST hash to `digest` with its function and total `size`; otherwise nothing
    ///   is published and [`Error::InvalidInput`](crate::Error::InvalidInput) is returned.
    /// - A digest whose function the store does not accept is refused with
    ///   [`Error::NotSupported`](crate::Error::NotSupported), as by every blob method.
    /// - If the blob already exists the stream may be dropped unread and [`PutOutcome::Exists`]
    ///   returned.
    async fn put_blob(&self, digest: &Digest, size: u64, payload: ByteStream)
    -> Result<PutOutcome>;

    /// Store a local file the caller has already verified as the blob `digest` (see
    /// [`VerifiedFile`]).
    ///
    /// # Behavior
    /// - As [`Store::put_blob`] with the file's bytes as the payload, except that the store may
    ///   take the file itself: rename it into the store, so that it is gone from
    ///   [`VerifiedFile::path`] afterwards. The caller removes whatever is left at the path.
    /// - Stores with local files take it where they can (same file system, stored as it is);
    ///   the default streams it through [`Store::put_blob`], which verifies it once more.
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        let payload = crate::artifacts::file_stream(file.path()).await?;
        self.put_blob(digest, file.size(), payload).await
    }

    /// Write a blob to the file `dest` (created or truncated), verifying it on the way.
    ///
    /// # Behavior
    /// - `Ok(false)` when the blob is missing; `dest` is then left untouched.
    /// - A blob that fails verification is removed from the store and reported as
    ///   [`Error::Corrupt`](crate::Error::Corrupt); `dest` may then hold garbage, so callers place
    ///   into temporary files.
    /// - Stores with local files honour `how` (hard links, reflinks); the default streams the
    ///   blob into the file ([`crate::artifacts::place_by_streaming`]) whatever `how` says.
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let _ = how;
        crate::artifacts::place_by_streaming(self, digest, dest).await
    }

    /// Which of `digests` the store does not hold, in the order given.
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Which of `keys` hold no usable entry, in the order given: the bulk "which of these
    /// exist" that content-addressed protocols (REAPI's FindMissingBlobs, the action cache's
    /// completeness check) ask about thousands of keys at a time.
    ///
    /// # Behavior
    /// - An entry counts as present when it exists and every blob it names is present. Present
    ///   entries are refreshed (they count as accessed for eviction, and their blobs as touched)
    ///   so that a client about to use them does not lose them to the next trim.
    /// - Existence only: a present entry may still turn out corrupt when read, and is then a
    ///   miss as usual.
    /// - The default reads each entry (see [`find_missing_entries_by_reading`]); a store with
    ///   an index, or that keeps every blob an entry names while the entry exists, answers with
    ///   one cheap check per key instead.
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        find_missing_entries_by_reading(self, keys).await
    }

    /// Remove the entry under `key`; `Ok(false)` if there was none. Blobs it alone used are
    /// reclaimed by the store when it can tell (by a trim at the latest).
    async fn delete(&self, key: &Key) -> Result<bool>;

    /// List every entry with its metadata. Optional ([`Capability::list`]): the default is one
    /// [`Error::NotSupported`](crate::Error::NotSupported).
    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let err = not_supported(self, "list");
        Box::pin(futures::stream::once(async move { Err(err) }))
    }

    /// Usage figures. Optional: the default is [`Error::NotSupported`](crate::Error::NotSupported).
    async fn stats(&self) -> Result<StoreStats> {
        Err(not_supported(self, "stats"))
    }

    /// Enforce budgets by evicting entries in the store's eviction order.
    ///
    /// # Behavior
    /// - At most one trim runs at a time per store; a trim that finds another running returns
    ///   a report with `skipped_locked` (unless `wait_for_lock`).
    /// - Blobs still named by a remaining entry are never removed.
    /// - Optional ([`Capability::trim`]): the default is
    ///   [`Error::NotSupported`](crate::Error::NotSupported).
    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        let _ = (opts, progress);
        Err(not_supported(self, "trim"))
    }

    /// Persist metadata the store batches in memory (access times, hit counters). The default,
    /// for stores that batch nothing, does nothing.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// The error of an optional operation `store` does not have.
fn not_supported<S: Store + ?Sized>(store: &S, operation: &'static str) -> crate::Error {
    crate::Error::NotSupported {
        store: store.to_string(),
        operation,
    }
}

/// Forward the contract through smart pointers so `Arc<dyn Store>` is itself a `Store`.
macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            fn capability(&self) -> Capability {
                (**self).capability()
            }
            async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
                (**self).get_entry_opts(key, opts).await
            }
            async fn put_entry_opts(
                &self,
                key: &Key,
                entry: &Entry,
                opts: PutOptions,
            ) -> Result<PutOutcome> {
                (**self).put_entry_opts(key, entry, opts).await
            }
            async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
                (**self).get_blob(digest).await
            }
            async fn put_blob(
                &self,
                digest: &Digest,
                size: u64,
                payload: ByteStream,
            ) -> Result<PutOutcome> {
                (**self).put_blob(digest, size, payload).await
            }
            async fn put_blob_file(
                &self,
                digest: &Digest,
                file: VerifiedFile,
            ) -> Result<PutOutcome> {
                (**self).put_blob_file(digest, file).await
            }
            async fn place_blob(
                &self,
                digest: &Digest,
                dest: &Path,
                how: Placement,
            ) -> Result<bool> {
                (**self).place_blob(digest, dest, how).await
            }
            async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
                (**self).find_missing(digests).await
            }
            async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
                (**self).find_missing_entries(keys).await
            }
            async fn delete(&self, key: &Key) -> Result<bool> {
                (**self).delete(key).await
            }
            fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
                (**self).list()
            }
            async fn stats(&self) -> Result<StoreStats> {
                (**self).stats().await
            }
            async fn trim(
                &self,
                opts: &TrimOptions,
                progress: Option<ProgressFn>,
            ) -> Result<TrimReport> {
                (**self).trim(opts, progress).await
            }
            async fn flush(&self) -> Result<()> {
                (**self).flush().await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);

/// How many entries [`find_missing_entries_by_reading`] reads at once.
const LOOKUP_CONCURRENCY: usize = 32;

/// [`Store::find_missing_entries`] for any store: read the entries (a bounded number at once,
/// counted as accesses), then ask [`Store::find_missing`] once for every blob they name.
///
/// # Errors
/// The first error of a read or of the blob check.
pub async fn find_missing_entries_by_reading<S: Store + ?Sized>(
    store: &S,
    keys: &[Key],
) -> Result<Vec<Key>> {
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(LOOKUP_CONCURRENCY) {
        let reads = chunk
            .iter()
            .map(|key| store.get_entry_opts(key, GetOptions::default()));
        entries.extend(futures::future::try_join_all(reads).await?);
    }
    let mut blobs: Vec<Digest> = entries
        .iter()
        .flatten()
        .flat_map(Entry::blob_digests)
        .collect();
    blobs.sort_unstable();
    blobs.dedup();
    let absent: std::collections::HashSet<Digest> = if blobs.is_empty() {
        Default::default()
    } else {
        store.find_missing(&blobs).await?.into_iter().collect()
    };
    Ok(keys
        .iter()
        .zip(&entries)
        .filter(|(_, entry)| match entry {
            None => true,
            Some(e) => e.blob_digests().iter().any(|d| absent.contains(d)),
        })
        .map(|(key, _)| key.clone())
        .collect())
}

/// Caller conveniences over [`Store`]. Implemented for every store; do not implement it yourself.
#[async_trait]
pub trait StoreExt: Store {
    /// [`Store::get_entry_opts`] with default options.
    async fn get_entry(&self, key: &Key) -> Result<Option<Entry>> {
        self.get_entry_opts(key, GetOptions::default()).await
    }
    /// [`Store::put_entry_opts`] with default options (overwrite).
    async fn put_entry(&self, key: &Key, entry: &Entry) -> Result<PutOutcome> {
        self.put_entry_opts(key, entry, PutOptions::default()).await
    }
    /// Read a whole blob into memory. Only for blobs known to be small (tests, tools).
    async fn get_blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>> {
        use futures::TryStreamExt;
        let Some(read) = self.get_blob(digest).await? else {
            return Ok(None);
        };
        if read.size > limit {
            return Err(crate::Error::TooLarge {
                what: format!("blob {digest}"),
                size: read.size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(read.size as usize);
        let mut stream = read.stream;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }
    /// Store bytes already in memory as a blob (BLAKE3).
    async fn put_blob_bytes(&self, bytes: Bytes) -> Result<Digest> {
        self.put_blob_bytes_as(HashFn::Blake3, bytes).await
    }
    /// Store bytes already in memory as a blob named by their digest under `func`.
    async fn put_blob_bytes_as(&self, func: HashFn, bytes: Bytes) -> Result<Digest> {
        let digest = func.digest(&bytes);
        let size = bytes.len() as u64;
        let stream = futures::stream::once(async move { Ok(bytes) });
        self.put_blob(&digest, size, Box::pin(stream)).await?;
        Ok(digest)
    }
}

impl<T: Store + ?Sized> StoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio_handles_zero_reads() {
        assert_eq!(StoreStats::default().hit_ratio(), 0.0);
        let s = StoreStats {
            hits: 3,
            misses: 1,
            ..Default::default()
        };
        assert!((s.hit_ratio() - 0.75).abs() < 1e-9);
    }

    fn _object_safe(_: &dyn Store) {}
}

//! Configuration of a filesystem store.

use std::sync::Arc;
use std::time::Duration;

use larder_core::eviction::EvictionPolicy;
use larder_core::trace::TraceLog;

/// How blobs are compressed on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// zstd level 3 when a sample of the blob (its first MiB) compresses to at most 90% of its
    /// size; raw otherwise. Raw blobs can be hard-linked and copied with `copy_file_range`.
    #[default]
    Auto,
    /// Never compress: every blob is stored as its exact bytes.
    Off,
    /// Always compress with zstd at this level (1 to 22; negative levels are faster).
    Level(i32),
}

/// Configuration of a [`FsStore`](crate::FsStore).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FsConfig {
    /// How blobs are compressed (default [`Compression::Auto`]).
    pub compression: Compression,
    /// Flush files and directories to disk before publishing them (default off: a crash may
    /// lose recent entries, but never exposes a partial one).
    pub fsync: bool,
    /// The eviction policy trims use; `None` (default) is native LRU straight from the index.
    pub eviction: Option<Arc<dyn EvictionPolicy>>,
    /// Batched index updates (access times, hit counts, new entries) are written at least this
    /// often (default 1 s), and on [`Store::flush`](larder_core::Store::flush) and drop.
    pub flush_interval: Duration,
    /// Blobs larger than this are refused with [`Error::TooLarge`](larder_core::Error::TooLarge).
    pub max_blob_bytes: Option<u64>,
    /// Entry files larger than this are not read (default and ceiling:
    /// [`MAX_ENTRY_BYTES`](larder_core::entry::MAX_ENTRY_BYTES)): they are misses, left on disk.
    /// A server sets its request limit here, so an entry it would refuse to take (written by
    /// another process, or before the limit was lowered) cannot cost it more to read.
    pub max_entry_bytes: u64,
    /// Record every entry lookup (hit or miss) and store into this access trace (default none).
    pub trace: Option<Arc<TraceLog>>,
    /// Memory for decoded small entries (default 16 MiB; 0 turns it off). A lookup of an
    /// entry read before costs one `stat` of its file instead of a read, decode and re-hash,
    /// as long as the file is unchanged (same inode, length, modification and change times).
    /// Only long-lived processes (the server, workers) gain from it.
    pub hot_entry_bytes: u64,
    /// How long an entry kept in memory is served without checking its file again (default
    /// 1 s; zero checks on every lookup). Changes by other processes (a trim, an overwrite)
    /// are seen at most this late; changes through this store at once.
    pub hot_entry_recheck: Duration,
    /// How many verified blobs this process remembers with their files' identities (default
    /// 100,000, about 10 MiB; 0 verifies every read). A raw blob whose file is still the one
    /// verified (same device, inode, length, modification and change times) is read without
    /// hashing; see the crate docs for what that trusts.
    pub verified_blobs: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        Self {
            compression: Compression::Auto,
            fsync: false,
            eviction: None,
            flush_interval: Duration::from_secs(1),
            max_blob_bytes: None,
            max_entry_bytes: larder_core::entry::MAX_ENTRY_BYTES as u64,
            trace: None,
            hot_entry_bytes: 16 << 20,
            hot_entry_recheck: Duration::from_secs(1),
            verified_blobs: 100_000,
        }
    }
}

impl FsConfig {
    /// Set [`FsConfig::compression`].
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    /// Set [`FsConfig::fsync`].
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }
    /// Set [`FsConfig::eviction`].
    pub fn with_eviction(mut self, policy: Option<Arc<dyn EvictionPolicy>>) -> Self {
        self.eviction = policy;
        self
    }
    /// Set [`FsConfig::flush_interval`].
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }
    /// Set [`FsConfig::trace`].
    pub fn with_trace(mut self, trace: Option<Arc<TraceLog>>) -> Self {
        self.trace = trace;
        self
    }
    /// Set [`FsConfig::hot_entry_bytes`].
    pub fn with_hot_entry_bytes(mut self, bytes: u64) -> Self {
        self.hot_entry_bytes = bytes;
        self
    }
    /// Set [`FsConfig::hot_entry_recheck`].
    pub fn with_hot_entry_recheck(mut self, recheck: Duration) -> Self {
        self.hot_entry_recheck = recheck;
        self
    }
    /// Set [`FsConfig::verified_blobs`].
    pub fn with_verified_blobs(mut self, blobs: usize) -> Self {
        self.verified_blobs = blobs;
        self
    }
    /// Set [`FsConfig::max_blob_bytes`].
    pub fn with_max_blob_bytes(mut self, limit: Option<u64>) -> Self {
        self.max_blob_bytes = limit;
        self
    }
    /// Set [`FsConfig::max_entry_bytes`] (at most
    /// [`MAX_ENTRY_BYTES`](larder_core::entry::MAX_ENTRY_BYTES)).
    pub fn with_max_entry_bytes(mut self, limit: u64) -> Self {
        self.max_entry_bytes = limit.min(larder_core::entry::MAX_ENTRY_BYTES as u64);
        self
    }
}

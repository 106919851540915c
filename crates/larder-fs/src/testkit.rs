//! Helpers for conformance harnesses whose store keeps its data in a larder-fs directory the
//! test owns (this crate's own tests, and larder-server behind larder-http): damage stored bytes
//! the way a failing disk or a stray write would, so the suite can check they are never served;
//! [`FsInFront`], a local fs tier in front of a remote store's harness, as the CLI stacks a
//! remote; and [`begin_fold`], the first half of a fold of the index journals, to leave behind
//! what a process killed in the middle of one leaves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use larder_core::layer::{BestEffort, Retry, Tier, Tiered};
use larder_core::testkit::Harness;
use larder_core::{Digest, Key, Store};

use crate::core::Layout;

/// Flip one byte in the middle of the stored blob `digest` under `root`, keeping its length.
/// Returns `false` if the blob is not there (or is empty).
pub fn corrupt_blob(root: &Path, digest: &Digest) -> bool {
    let layout = Layout::new(root.to_path_buf());
    let Some(path) = [false, true]
        .into_iter()
        .map(|compressed| layout.blob_path(digest, compressed))
        .find(|p| p.exists())
    else {
        return false;
    };
    // Blobs are stored read-only.
    if std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).is_err() {
        return false;
    }
    let Ok(mut bytes) = std::fs::read(&path) else {
        return false;
    };
    if bytes.is_empty() {
        return false;
    }
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, bytes).is_ok()
}

/// Overwrite the stored entry under `key` with bytes that do not decode. Returns `false` if there
/// is no such entry.
pub fn corrupt_entry(root: &Path, key: &Key) -> bool {
    let path = Layout::new(root.to_path_buf()).entry_path(&key.storage_name());
    path.exists() && std::fs::write(&path, b"LRDE\x01\x00 not an entry").is_ok()
}

/// The index journals of a cache directory moved aside, read and locked by [`begin_fold`],
/// as a fold holds them until its commit. Dropping it releases the locks and leaves the files:
/// what a fold killed before its commit leaves behind.
#[derive(Debug)]
pub struct FoldInProgress {
    taken: Vec<crate::index::Taken>,
}

impl FoldInProgress {
    /// How many journals were moved aside (0, 1 or 2).
    pub fn journals(&self) -> usize {
        self.taken.len()
    }
}

/// Start folding the index journals of the cache at `root` (`access.log`, `changes.log`) the way
/// a flush does, and stop before writing their records to the index.
///
/// # Errors
/// When the index cannot be opened.
pub fn begin_fold(root: &Path) -> larder_core::Result<FoldInProgress> {
    let layout = Layout::new(root.to_path_buf());
    layout.create_dirs()?;
    let index = crate::index::Index::open(&layout, true)?;
    let (taken, _records) = index.take_journals();
    Ok(FoldInProgress { taken })
}

/// A conformance harness: a local fs store in a temporary directory in front of `remote`'s
/// store, best-effort and with retries, as the CLI stacks a remote. Damage goes to both tiers.
pub struct FsInFront<H> {
    _dir: tempfile::TempDir,
    root: PathBuf,
    remote: H,
    store: Arc<dyn Store>,
}

impl<H: Harness> FsInFront<H> {
    /// The tiers over `remote`'s store.
    ///
    /// # Panics
    /// When the temporary directory or the fs store cannot be made (a test harness).
    pub fn new(remote: H) -> FsInFront<H> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let root = dir.path().join("local");
        let local = crate::FsStore::open(&root, crate::FsConfig::default())
            .unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
        let slow: Arc<dyn Store> = Arc::new(BestEffort::new(Retry::new(remote.store())));
        let tiers = vec![Tier::new(Arc::new(local)), Tier::new(slow)];
        let store = Tiered::new(tiers).unwrap_or_else(|e| panic!("tiers: {e}"));
        FsInFront {
            _dir: dir,
            root,
            remote,
            store: Arc::new(store),
        }
    }
}

impl<H> std::fmt::Debug for FsInFront<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsInFront")
            .field("store", &self.store.to_string())
            .finish()
    }
}

#[async_trait::async_trait]
impl<H: Harness> Harness for FsInFront<H> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        let local = corrupt_blob(&self.root, digest);
        self.remote.corrupt_blob(digest).await | local
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        let local = corrupt_entry(&self.root, key);
        self.remote.corrupt_entry(key).await | local
    }

    fn large_blob_bytes(&self) -> u64 {
        self.remote.large_blob_bytes()
    }
}

//! [`FsStore`]: the [`Store`] implementation over a local directory.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::stream::BoxStream;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};

use crate::config::FsConfig;

/// A larder cache in a local directory, shared safely by many processes.
pub struct FsStore {
    root: PathBuf,
    #[allow(dead_code)]
    config: FsConfig,
}

impl FsStore {
    /// Open (creating if needed) the cache directory `root`.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created or read.
    pub fn open(root: impl Into<PathBuf>, config: FsConfig) -> Result<FsStore> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(FsStore { root, config })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn unsupported(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            store: self.to_string(),
            operation,
        }
    }
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fs:{}", self.root.display())
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore").field("root", &self.root).finish()
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
        cap
    }

    async fn get_entry_opts(&self, _key: &Key, _opts: GetOptions) -> Result<Option<Entry>> {
        Err(self.unsupported("get_entry (not yet implemented)"))
    }

    async fn put_entry_opts(
        &self,
        _key: &Key,
        _entry: &Entry,
        _opts: PutOptions,
    ) -> Result<PutOutcome> {
        Err(self.unsupported("put_entry (not yet implemented)"))
    }

    async fn get_blob(&self, _digest: &Digest) -> Result<Option<BlobRead>> {
        Err(self.unsupported("get_blob (not yet implemented)"))
    }

    async fn put_blob(
        &self,
        _digest: &Digest,
        _size: u64,
        _payload: ByteStream,
    ) -> Result<PutOutcome> {
        Err(self.unsupported("put_blob (not yet implemented)"))
    }

    async fn place_blob(&self, _digest: &Digest, _dest: &Path, _how: Placement) -> Result<bool> {
        Err(self.unsupported("place_blob (not yet implemented)"))
    }

    async fn find_missing(&self, _digests: &[Digest]) -> Result<Vec<Digest>> {
        Err(self.unsupported("find_missing (not yet implemented)"))
    }

    async fn delete(&self, _key: &Key) -> Result<bool> {
        Err(self.unsupported("delete (not yet implemented)"))
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let err = self.unsupported("list (not yet implemented)");
        Box::pin(futures::stream::once(async move { Err(err) }))
    }

    async fn stats(&self) -> Result<StoreStats> {
        Err(self.unsupported("stats (not yet implemented)"))
    }

    async fn trim(&self, _opts: &TrimOptions, _progress: Option<ProgressFn>) -> Result<TrimReport> {
        Err(self.unsupported("trim (not yet implemented)"))
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

//! [`Lazy`]: a store opened on its first use, for the slower tiers. A command that a faster tier
//! answers (a local hit) never pays for opening a remote store: building an HTTP client with its
//! TLS roots, or an SDK client, costs a few milliseconds, as much as the whole hit.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::stream::BoxStream;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport, VerifiedFile,
};

type Open = Box<dyn Fn() -> anyhow::Result<Arc<dyn Store>> + Send + Sync>;

/// A store opened by `open` on first use. One that fails to open answers every call with that
/// error (a permanent one: the best-effort layer around it warns once and skips it).
pub(super) struct Lazy {
    name: String,
    open: Open,
    store: OnceLock<std::result::Result<Arc<dyn Store>, String>>,
}

impl Lazy {
    pub(super) fn new(name: String, open: Open) -> Lazy {
        Lazy {
            name,
            open,
            store: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&Arc<dyn Store>> {
        let opened = self
            .store
            .get_or_init(|| (self.open)().map_err(|e| format!("{e:#}")));
        opened.as_ref().map_err(|message| Error::Store {
            store: self.name.clone(),
            message: message.clone(),
            temporary: false,
            source: None,
        })
    }
}

impl fmt::Debug for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lazy").field("name", &self.name).finish()
    }
}

impl fmt::Display for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.store.get() {
            Some(Ok(store)) => store.fmt(f),
            _ => f.write_str(&self.name),
        }
    }
}

#[async_trait]
impl Store for Lazy {
    fn capability(&self) -> Capability {
        self.get().map_or(Capability::none(), |s| s.capability())
    }
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        self.get()?.get_entry_opts(key, opts).await
    }
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        self.get()?.put_entry_opts(key, entry, opts).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        self.get()?.get_blob(digest).await
    }
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        self.get()?.put_blob(digest, size, payload).await
    }
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        self.get()?.put_blob_file(digest, file).await
    }
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        self.get()?.place_blob(digest, dest, how).await
    }
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.get()?.find_missing(digests).await
    }
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        self.get()?.find_missing_entries(keys).await
    }
    async fn delete(&self, key: &Key) -> Result<bool> {
        self.get()?.delete(key).await
    }
    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        match self.get() {
            Ok(store) => store.list(),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.get()?.stats().await
    }
    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        self.get()?.trim(opts, progress).await
    }
    async fn flush(&self) -> Result<()> {
        // Nothing to flush in a store never opened.
        match self.store.get() {
            Some(Ok(store)) => store.flush().await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use larder_core::StoreExt;

    use super::*;

    #[tokio::test]
    async fn opens_once_on_first_use_and_a_failure_is_every_call_s_error() {
        static OPENED: AtomicUsize = AtomicUsize::new(0);
        let lazy = Lazy::new(
            "memory".into(),
            Box::new(|| {
                OPENED.fetch_add(1, Ordering::SeqCst);
                Ok(Arc::new(larder_core::testkit::MemoryStore::new()) as Arc<dyn Store>)
            }),
        );
        assert_eq!(lazy.to_string(), "memory");
        lazy.flush().await.expect("flush of an unopened store");
        assert_eq!(
            OPENED.load(Ordering::SeqCst),
            0,
            "not opened by flush or Display"
        );
        let key = Key::new("k").expect("key");
        assert!(lazy.get_entry(&key).await.expect("get").is_none());
        assert!(lazy.get_entry(&key).await.expect("get").is_none());
        assert_eq!(OPENED.load(Ordering::SeqCst), 1);

        let broken = Lazy::new(
            "s3 store x".into(),
            Box::new(|| anyhow::bail!("no credentials")),
        );
        for _ in 0..2 {
            let e = broken.get_entry(&key).await.expect_err("fails");
            assert!(e.to_string().contains("no credentials"), "{e}");
            assert!(!e.is_temporary());
        }
    }
}

//! [`OpendalStore`]: the [`Store`] implementation over an OpenDAL [`Operator`].
//!
//! Layout under the service's root:
//! - `entries/<storage name>`: entry documents;
//! - `blobs/<blake3 hex>`: blob bytes, uncompressed, verified on every read;
//! - on services that cannot stream one object in several writes (WebDAV, Redis, …), a blob
//!   larger than one part is stored as parts `parts/<blake3 hex>/<n>` and a small manifest
//!   `blobs/<blake3 hex>.parts`, written last (see [`crate::writer`]).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use larder_core::entry::MAX_ENTRY_BYTES;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutMode, PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};

use crate::config::OpendalStoreBuilder;
use crate::error::{is_exists, is_not_found, od};

/// Register the compiled-in services and the HTTP transport (reqwest), once per process.
/// reqwest is built without a crypto provider (no aws-lc build): ring is installed as the
/// process default unless something installed one first.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::init_default_registry();
        opendal_http_transport_reqwest::install_default();
    });
}

/// A store in any OpenDAL service. Cheap to clone.
#[derive(Clone)]
pub struct OpendalStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) op: Operator,
    pub(crate) cfg: OpendalStoreBuilder,
    /// The service takes one object in several writes (multipart, append, a file): blobs
    /// stream into one object. Otherwise large blobs are stored in parts.
    pub(crate) streaming: bool,
    /// Create-only writes are native (`if_not_exists`).
    create_only: bool,
    list: bool,
    delete: bool,
}

impl fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalStore")
            .field("cfg", &self.inner.cfg)
            .field("streaming", &self.inner.streaming)
            .field("create_only", &self.inner.create_only)
            .finish()
    }
}

impl fmt::Display for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opendal store {}", self.inner.cfg.name)
    }
}

impl OpendalStore {
    /// A store from a URL (see [`OpendalStoreBuilder::from_url`]), with the environment.
    ///
    /// # Errors
    /// As [`OpendalStoreBuilder::from_url`] and [`OpendalStoreBuilder::build`].
    pub fn from_url(url: &str) -> Result<OpendalStore> {
        OpendalStoreBuilder::from_url(url)?.build()
    }

    pub(crate) fn from_builder(cfg: OpendalStoreBuilder) -> Result<OpendalStore> {
        let what = format!("configuring {}", cfg.name);
        let op = match &cfg.uri {
            Some(uri) => {
                opendal::OperatorUri::new(uri, cfg.options.clone()).and_then(Operator::from_uri)
            }
            None => Operator::via_iter(&cfg.scheme, cfg.options.clone()),
        }
        .map_err(|e| od(&what, e))?;
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(cfg.timeout)
                    .with_io_timeout(cfg.timeout),
            )
            // Only temporary errors are retried (OpenDAL's classification); quickly, so a dead
            // remote costs a build little before it falls back to running the command.
            .layer(
                RetryLayer::new()
                    .with_max_times(cfg.retries)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter(),
            );
        let cap = op.info().capability();
        let inner = Inner {
            streaming: cap.write_can_multi,
            create_only: cap.write_with_if_not_exists,
            list: cap.list && cfg.list.unwrap_or(true),
            delete: cap.delete,
            op,
            cfg,
        };
        Ok(OpendalStore {
            inner: Arc::new(inner),
        })
    }

    /// The OpenDAL operator under this store (for tools and tests that look behind it).
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// Whether large blobs go into one object (`true`) or into parts (see the crate docs).
    pub fn streams_blobs(&self) -> bool {
        self.inner.streaming
    }

    pub(crate) fn op(&self) -> &Operator {
        &self.inner.op
    }

    pub(crate) fn part_size(&self) -> usize {
        self.inner.cfg.part_size
    }

    /// The object of the entry under `key`.
    pub fn entry_path(key: &Key) -> String {
        format!("entries/{}", key.storage_name())
    }

    /// The object of a blob stored whole.
    pub fn blob_path(digest: &Digest) -> String {
        format!("blobs/{}", digest.to_hex())
    }

    /// The manifest of a blob stored in parts.
    pub fn manifest_path(digest: &Digest) -> String {
        format!("blobs/{}.parts", digest.to_hex())
    }

    /// Part `n` of a blob stored in parts.
    pub fn part_path(digest: &Digest, n: u64) -> String {
        format!("parts/{}/{n:06}", digest.to_hex())
    }

    /// Whether `path` exists.
    pub(crate) async fn exists(&self, path: &str) -> Result<bool> {
        match self.op().stat(path).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(od(&format!("checking {path}"), e)),
        }
    }

    /// Delete `path` (idempotent).
    pub(crate) async fn remove(&self, path: &str) -> Result<()> {
        match self.op().delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(od(&format!("deleting {path}"), e)),
        }
    }

    /// Read a small object whole: `None` when it does not exist.
    pub(crate) async fn read_small(&self, path: &str) -> Result<Option<Bytes>> {
        match self.op().read(path).await {
            Ok(buf) => Ok(Some(buf.to_bytes())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(od(&format!("reading {path}"), e)),
        }
    }

    /// Write a small object in one request. With `create`, only if absent: natively where the
    /// service can; elsewhere a check first, whose race (two creators both write) is harmless
    /// because both write a complete object for the same key.
    pub(crate) async fn write_small(
        &self,
        path: &str,
        body: Bytes,
        create: bool,
    ) -> Result<PutOutcome> {
        let what = format!("writing {path}");
        if create && !self.inner.create_only && self.exists(path).await? {
            return Ok(PutOutcome::Exists);
        }
        let res = if create && self.inner.create_only {
            self.op().write_with(path, body).if_not_exists(true).await
        } else {
            self.op().write(path, body).await
        };
        match res {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if create && is_exists(&e) => Ok(PutOutcome::Exists),
            Err(e) => Err(od(&what, e)),
        }
    }

    /// Whether the blob is stored, whole or in parts.
    pub(crate) async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        if self.exists(&Self::blob_path(digest)).await? {
            return Ok(true);
        }
        if self.inner.streaming {
            return Ok(false);
        }
        self.exists(&Self::manifest_path(digest)).await
    }

    /// Every object under `dir` (recursively where the service can), with its size and
    /// modification time in ms.
    fn list_dir(&self, dir: &'static str) -> BoxStream<'static, Result<(String, u64, u64)>> {
        let op = self.op().clone();
        let listed = async move {
            let lister = op
                .lister_with(dir)
                .recursive(true)
                .await
                .map_err(|e| od(&format!("listing {dir}"), e))?;
            Ok::<_, Error>(lister.filter_map(move |item| async move {
                match item {
                    Ok(entry) => {
                        let (path, meta) = entry.into_parts();
                        if meta.is_dir() {
                            return None;
                        }
                        let modified = meta
                            .last_modified()
                            .map(|t| t.into_inner().as_millisecond().max(0) as u64)
                            .unwrap_or(0);
                        Some(Ok((path, meta.content_length(), modified)))
                    }
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => Some(Err(od(&format!("listing {dir}"), e))),
                }
            }))
        };
        Box::pin(
            futures::stream::once(listed)
                .map(|r| match r {
                    Ok(s) => s.boxed(),
                    // A directory that was never written lists as empty.
                    Err(Error::NotFound { .. }) => futures::stream::empty().boxed(),
                    Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                })
                .flatten(),
        )
    }

    /// The metadata of one listed entry: read and decoded (the document is small, and the
    /// services here keep no metadata larder can rely on). `None` if it went or is broken.
    async fn entry_meta(&self, path: String, modified_ms: u64) -> Result<Option<EntryMeta>> {
        let Some(bytes) = self.read_small(&path).await? else {
            return Ok(None);
        };
        let Ok(entry) = Entry::decode(&bytes) else {
            return Ok(None);
        };
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        let blobs: u64 = entry
            .contents()
            .filter(|c| c.blob_digest().is_some())
            .map(|c| c.size)
            .sum();
        Ok(Some(EntryMeta {
            name,
            size: bytes.len() as u64 + blobs,
            created_ms: entry.created_ms,
            // No access times in these services: the last write stands in for the last use.
            last_access_ms: modified_ms.max(entry.created_ms),
            hits: 0,
            cost_ms: entry.cost_ms,
        }))
    }

    fn not_supported(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            store: self.to_string(),
            operation,
        }
    }
}

#[async_trait]
impl Store for OpendalStore {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.list = self.inner.list;
        cap.delete = self.inner.delete;
        // Remote trimming is being made common to every remote store; until then, none here.
        cap.trim = false;
        cap
    }

    async fn get_entry_opts(&self, key: &Key, _opts: GetOptions) -> Result<Option<Entry>> {
        let path = Self::entry_path(key);
        let Some(bytes) = self.read_small(&path).await? else {
            return Ok(None);
        };
        let what = format!("entry {key}");
        if bytes.len() > MAX_ENTRY_BYTES {
            tracing::warn!(
                "{self}: {what} is {} bytes, over the entry limit; removed",
                bytes.len()
            );
            self.remove(&path).await?;
            return Ok(None);
        }
        match Entry::decode(&bytes) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                tracing::warn!("{self}: {what}: {e}; removed, treated as a miss");
                self.remove(&path).await?;
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
        let doc = entry.encode()?;
        self.write_small(
            &Self::entry_path(key),
            Bytes::from(doc),
            opts.mode == PutMode::Create,
        )
        .await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        crate::reader::get_blob(self, digest).await
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        crate::writer::put_blob(self, digest, size, payload).await
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, _how: Placement) -> Result<bool> {
        let Some(read) = self.get_blob(digest).await? else {
            return Ok(false);
        };
        larder_core::artifacts::stream_to_file(read, dest).await?;
        Ok(true)
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let checks = futures::stream::iter(digests.iter().copied())
            .map(|d| async move { Ok::<_, Error>((d, self.blob_exists(&d).await?)) })
            .buffered(self.inner.cfg.concurrency);
        let results: Vec<Result<(Digest, bool)>> = checks.collect().await;
        let mut missing = Vec::new();
        for r in results {
            let (d, there) = r?;
            if !there {
                missing.push(d);
            }
        }
        Ok(missing)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        if !self.inner.delete {
            return Err(self.not_supported("delete"));
        }
        let path = Self::entry_path(key);
        if !self.exists(&path).await? {
            return Ok(false);
        }
        self.remove(&path).await?;
        Ok(true)
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        if !self.inner.list {
            let e = self.not_supported("list");
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        let store = self.clone();
        let metas = self
            .list_dir("entries/")
            .map(move |item| {
                let store = store.clone();
                async move {
                    let (path, _, modified) = item?;
                    store.entry_meta(path, modified).await
                }
            })
            .buffered(self.inner.cfg.concurrency)
            .filter_map(|r| async move { r.transpose() });
        Box::pin(metas)
    }

    async fn stats(&self) -> Result<StoreStats> {
        if !self.inner.list {
            return Err(self.not_supported("stats (it lists)"));
        }
        let mut stats = StoreStats::default();
        let mut entries = self.list_dir("entries/");
        while let Some(item) = entries.next().await {
            stats.entries += 1;
            stats.bytes += item?.1;
        }
        for dir in ["blobs/", "parts/"] {
            let mut objects = self.list_dir(dir);
            while let Some(item) = objects.next().await {
                stats.bytes += item?.1;
            }
        }
        Ok(stats)
    }

    async fn trim(&self, _opts: &TrimOptions, _progress: Option<ProgressFn>) -> Result<TrimReport> {
        // Deliberately not a copy of larder-s3's trim: remote trimming is being moved to one
        // place shared by every remote store, and this store will use it from there.
        Err(self.not_supported(
            "trim (remote trimming for OpenDAL services is not implemented yet; use the service's own expiry rules meanwhile)",
        ))
    }

    async fn flush(&self) -> Result<()> {
        // Nothing is batched: no access records are kept (no trim yet).
        Ok(())
    }
}

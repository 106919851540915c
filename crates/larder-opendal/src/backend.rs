//! [`OpendalStore`]: the [`Store`] implementation over an OpenDAL [`Operator`].
//!
//! Layout under the service's root:
//! - `entries/<storage name>`: entry documents;
//! - `blobs/<blake3 hex>`: blob bytes, uncompressed, verified on every read;
//! - on services that cannot stream one object in several writes (WebDAV, Redis, …), a blob
//!   larger than one part is stored as parts `parts/<blake3 hex>/<n>` and a small manifest
//!   `blobs/<blake3 hex>.parts`, written last (see [`crate::writer`]);
//! - `access/…` (access records) and `trim/…` (the trim's lease and index), as larder-bucket
//!   lays them out: the store implements [`Bucket`] so that larder-bucket's trim runs on it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use larder_bucket::{AccessLog, Bucket, Listed};
use larder_core::entry::{MAX_ENTRY_BYTES, now_ms};
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutMode, PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{Metadata, Operator};

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
    /// Why this store cannot be trimmed, if it cannot.
    no_trim: Option<&'static str>,
    /// Entry hits not yet written as an access record (kept only where a trim reads them).
    access: AccessLog,
}

impl fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalStore")
            .field("cfg", &self.inner.cfg)
            .field("streaming", &self.inner.streaming)
            .field("create_only", &self.inner.create_only)
            .field("trim", &self.inner.no_trim.is_none())
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
        let list = cap.list && cfg.list.unwrap_or(true);
        let no_trim = if !list {
            Some(
                "trim (a trim must see every entry and blob, and this service cannot list, or listing is off with ?list=false; use the service's own expiry rules)",
            )
        } else if !(cap.delete && cap.stat && cap.read && cap.write) {
            Some("trim (the service cannot stat, read, write and delete objects)")
        } else {
            None
        };
        let inner = Inner {
            streaming: cap.write_can_multi,
            create_only: cap.write_with_if_not_exists,
            list,
            delete: cap.delete,
            no_trim,
            access: AccessLog::new(cfg.access_batch),
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

    /// The stat of `path`, `None` when it does not exist.
    pub(crate) async fn stat(&self, path: &str) -> Result<Option<Metadata>> {
        match self.op().stat(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(od(&format!("checking {path}"), e)),
        }
    }

    /// Whether the blob is stored (whole or in parts) and recent enough to reuse: a blob older
    /// than half the trim grace period could be collected by a trim before the entry naming
    /// it lands, so it reads as missing and the writer uploads it again, which refreshes its
    /// modification time (OpenDAL has no copy-onto-itself every service honours; on `fs` a
    /// copy onto itself would truncate the file).
    pub(crate) async fn blob_fresh(&self, digest: &Digest) -> Result<bool> {
        let mut found = self.stat(&Self::blob_path(digest)).await?;
        if found.is_none() && !self.inner.streaming {
            found = self.stat(&Self::manifest_path(digest)).await?;
        }
        let Some(meta) = found else {
            return Ok(false);
        };
        let half_grace = self.inner.cfg.trim_grace.as_millis() as u64 / 2;
        // No modification time: a trim never collects it either (see `listed`).
        Ok(modified_ms(&meta).is_none_or(|m| m.saturating_add(half_grace) >= now_ms()))
    }

    /// Every object under `dir` (recursively where the service can), as a [`Listed`]: size,
    /// modification time (a stat when the listing lacks it) and version (see [`version`]).
    fn list_dir(&self, dir: String) -> BoxStream<'static, Result<Listed>> {
        let op = self.op().clone();
        let concurrency = self.inner.cfg.concurrency;
        let listed = async move {
            let lister = op
                .lister_with(&dir)
                .recursive(true)
                .await
                .map_err(|e| od(&format!("listing {dir}"), e))?;
            let items = lister
                .filter_map(move |item| {
                    let dir = dir.clone();
                    async move {
                        match item {
                            Ok(entry) => {
                                let (path, meta) = entry.into_parts();
                                (!meta.is_dir()).then_some(Ok((path, meta)))
                            }
                            Err(e) if is_not_found(&e) => None,
                            Err(e) => Some(Err(od(&format!("listing {dir}"), e))),
                        }
                    }
                })
                .map(move |item| {
                    let op = op.clone();
                    async move {
                        let (path, meta) = item?;
                        if meta.last_modified().is_some() {
                            return Ok(Some(listed(path, &meta)));
                        }
                        // Some listings carry no times: ask for them.
                        match op.stat(&path).await {
                            Ok(meta) => Ok(Some(listed(path, &meta))),
                            Err(e) if is_not_found(&e) => Ok(None),
                            Err(e) => Err(od(&format!("checking {path}"), e)),
                        }
                    }
                })
                .buffered(concurrency)
                .filter_map(|r| async move { r.transpose() });
            Ok::<_, Error>(items)
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

    /// The blobs as larder-bucket's trim sees them: one [`Listed`] per digest,
    /// `blobs/<hex>`, whether stored whole or as a manifest and parts (sizes summed, the
    /// latest modification), so a blob in parts is counted and collected as a whole. Parts no
    /// manifest names (a failed upload that could not clean up) show up too, and go once old.
    fn list_blobs(&self) -> BoxStream<'static, Result<Listed>> {
        if self.inner.streaming {
            return self.list_dir("blobs/".into());
        }
        let (blobs, parts) = (
            self.list_dir("blobs/".into()),
            self.list_dir("parts/".into()),
        );
        let merged = async move {
            let all: Vec<Listed> = blobs.chain(parts).try_collect().await?;
            Ok::<_, Error>(by_digest(all).into_iter().map(Ok).collect::<Vec<_>>())
        };
        Box::pin(
            futures::stream::once(merged)
                .map(|r| match r {
                    Ok(v) => futures::stream::iter(v).boxed(),
                    Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                })
                .flatten(),
        )
    }

    /// Delete a blob a trim found unreferenced, as a whole (the object, or the manifest and
    /// then its parts), but only what is still older than the grace period: a writer that
    /// uploaded the blob again since the listing (a reuse refreshes it) keeps it, and parts a
    /// writer is uploading right now are young.
    async fn remove_old_blob(&self, hex: &str) -> Result<()> {
        let cutoff = now_ms().saturating_sub(self.inner.cfg.trim_grace.as_millis() as u64);
        let old = |meta: &Metadata| modified_ms(meta).is_some_and(|m| m < cutoff);
        let whole = format!("blobs/{hex}");
        if let Some(meta) = self.stat(&whole).await?
            && old(&meta)
        {
            self.remove(&whole).await?;
        }
        if self.inner.streaming {
            return Ok(());
        }
        let manifest = format!("blobs/{hex}.parts");
        match self.stat(&manifest).await? {
            // Stored again meanwhile: its parts are live.
            Some(meta) if !old(&meta) => return Ok(()),
            // The manifest first: without it the parts are unreachable, never half a blob.
            Some(_) => self.remove(&manifest).await?,
            None => {}
        }
        let parts: Vec<Listed> = self.list_dir(format!("parts/{hex}/")).try_collect().await?;
        futures::stream::iter(parts)
            .filter(|p| futures::future::ready(p.modified_ms < cutoff))
            .map(|p| async move { self.remove(&p.key).await })
            .buffer_unordered(self.inner.cfg.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
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
        cap.trim = self.inner.no_trim.is_none();
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
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
            Ok(entry) => {
                // Only where a trim will fold the records: elsewhere they would pile up.
                if opts.record_access && self.inner.no_trim.is_none() {
                    self.inner.access.record(self, key).await;
                }
                Ok(Some(entry))
            }
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
        larder_bucket::find_missing(digests, self.inner.cfg.concurrency, |d| async move {
            self.blob_fresh(&d).await
        })
        .await
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
            .list_dir("entries/".into())
            .map(move |item| {
                let store = store.clone();
                async move {
                    let l = item?;
                    store.entry_meta(l.key, l.modified_ms).await
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
        let sizes = |dir: &str| self.list_dir(dir.into()).map_ok(|l| l.size);
        larder_bucket::stats_from_listings(
            sizes("entries/"),
            sizes("blobs/").chain(sizes("parts/")),
        )
        .await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        match self.inner.no_trim {
            Some(why) => Err(self.not_supported(why)),
            None => larder_bucket::trim(self, opts, progress).await,
        }
    }

    async fn flush(&self) -> Result<()> {
        if self.inner.no_trim.is_some() {
            return Ok(());
        }
        self.inner.access.flush(self).await
    }
}

/// Whole blobs (`blobs/<hex>`), manifests (`blobs/<hex>.parts`) and parts
/// (`parts/<hex>/<n>`) grouped into one [`Listed`] per digest, `blobs/<hex>`: sizes summed,
/// the latest modification.
fn by_digest(objects: Vec<Listed>) -> Vec<Listed> {
    let mut grouped: BTreeMap<String, Listed> = BTreeMap::new();
    for item in objects {
        let hex = match item.key.strip_prefix("parts/") {
            Some(rest) => rest.split('/').next().unwrap_or_default(),
            None => {
                let name = item.name();
                name.strip_suffix(".parts").unwrap_or(name)
            }
        };
        let key = format!("blobs/{hex}");
        let e = grouped.entry(key.clone()).or_insert(Listed {
            key,
            size: 0,
            modified_ms: 0,
            version: String::new(),
        });
        e.size += item.size;
        e.modified_ms = e.modified_ms.max(item.modified_ms);
    }
    grouped.into_values().collect()
}

/// A modification time in ms since the Unix epoch, if the service gives one.
fn modified_ms(meta: &Metadata) -> Option<u64> {
    meta.last_modified()
        .map(|t| t.into_inner().as_millisecond().max(0) as u64)
}

/// What changes when an object is rewritten: its ETag where the service gives one (azblob,
/// most WebDAV servers), else its modification time (to the nanosecond where the service
/// keeps it: `fs`) and size. See the crate docs for what the weaker form leaves open.
fn version(meta: &Metadata) -> String {
    match meta.etag() {
        Some(etag) => format!("etag:{etag}"),
        None => format!(
            "mtime:{}:{}",
            meta.last_modified()
                .map_or(0, |t| t.into_inner().as_nanosecond()),
            meta.content_length()
        ),
    }
}

/// A listed object. One without a modification time is given "now": a trim then treats it as
/// too young to collect, never as old.
fn listed(key: String, meta: &Metadata) -> Listed {
    Listed {
        size: meta.content_length(),
        modified_ms: modified_ms(meta).unwrap_or_else(now_ms),
        version: version(meta),
        key,
    }
}

/// The object primitives larder-bucket's access records and trim run on. Keys are relative to
/// the service's root, so the prefix is empty.
#[async_trait]
impl Bucket for OpendalStore {
    fn prefix(&self) -> &str {
        ""
    }

    fn concurrency(&self) -> usize {
        self.inner.cfg.concurrency
    }

    fn eviction_policy(&self) -> &dyn larder_core::eviction::EvictionPolicy {
        self.inner.cfg.policy.as_ref()
    }

    fn trim_grace(&self) -> Duration {
        self.inner.cfg.trim_grace
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        if prefix == self.blobs_prefix() {
            self.list_blobs()
        } else {
            self.list_dir(prefix.to_owned())
        }
    }

    async fn entry_meta(&self, listed: &Listed) -> Result<Option<EntryMeta>> {
        OpendalStore::entry_meta(self, listed.key.clone(), listed.modified_ms).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.read_small(key).await
    }

    async fn put(&self, key: &str, body: Bytes, create: bool) -> Result<PutOutcome> {
        self.write_small(key, body, create).await
    }

    /// A blob (`blobs/<hex>`, as the blob listing names it) goes as a whole, and
    /// only if still older than the grace period; anything else is deleted as is.
    async fn delete(&self, key: &str) -> Result<()> {
        match key.strip_prefix("blobs/") {
            Some(hex) => self.remove_old_blob(hex).await,
            None => self.remove(key).await,
        }
    }

    /// A stat then a delete: OpenDAL has no conditional delete, so a re-put between the two
    /// is the (small) window left, as on S3.
    async fn delete_if_version(&self, key: &str, version_then: &str) -> Result<bool> {
        match self.stat(key).await? {
            Some(meta) if version(&meta) == version_then => {
                self.remove(key).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64, modified_ms: u64) -> Listed {
        Listed {
            key: key.into(),
            size,
            modified_ms,
            version: "v".into(),
        }
    }

    #[test]
    fn blobs_in_parts_list_as_one_blob() {
        let (a, b, c) = ("aa".repeat(32), "bb".repeat(32), "cc".repeat(32));
        let got = by_digest(vec![
            obj(&format!("blobs/{a}"), 10, 5),
            obj(&format!("blobs/{b}.parts"), 20, 9),
            obj(&format!("parts/{b}/000000"), 100, 7),
            obj(&format!("parts/{b}/000001"), 50, 8),
            // Parts no manifest names.
            obj(&format!("parts/{c}/000000"), 1, 3),
        ]);
        let summary: Vec<(String, u64, u64)> = got
            .into_iter()
            .map(|l| (l.key, l.size, l.modified_ms))
            .collect();
        assert_eq!(
            summary,
            vec![
                (format!("blobs/{a}"), 10, 5),
                (format!("blobs/{b}"), 170, 9),
                (format!("blobs/{c}"), 1, 3),
            ]
        );
    }
}

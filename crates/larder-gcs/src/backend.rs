//! [`GcsStore`]: the [`Store`] implementation over Cloud Storage.
//!
//! Layout under the store's prefix `P/` (the same as larder-s3's):
//! - `P/entries/<storage name>`: entry documents, with custom metadata `larder-size`,
//!   `larder-created-ms` and `larder-cost-ms` so listing needs no download;
//! - `P/blobs/<blake3 hex>`: blob bytes, uncompressed, verified on every read;
//! - `P/access/…`, `P/trim/…`: access records and the trim's lease and index (larder-bucket).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use larder_bucket::{AccessLog, Bucket, Listed};
use larder_core::entry::MAX_ENTRY_BYTES;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutMode, PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};
use reqwest_gcs::Method;
use tokio::sync::OnceCell;

use crate::config::GcsStoreBuilder;
use crate::core::{Clients, ObjectMeta, encode, is_not_found, retrying, send};
use crate::error::{GcsError, sdk};

pub(crate) const META_SIZE: &str = "larder-size";
const META_CREATED: &str = "larder-created-ms";
const META_COST: &str = "larder-cost-ms";

/// A store in a Cloud Storage bucket. Cheap to clone.
#[derive(Clone)]
pub struct GcsStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: GcsStoreBuilder,
    clients: OnceCell<Clients>,
    name: String,
    access: AccessLog,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl fmt::Display for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcs store {}", self.inner.name)
    }
}

impl GcsStore {
    /// A store from a `gs://` URL (see [`GcsStoreBuilder::from_url`]), built with the
    /// environment.
    ///
    /// # Errors
    /// As [`GcsStoreBuilder::from_url`] and [`GcsStoreBuilder::build`].
    pub fn from_url(url: &str) -> Result<GcsStore> {
        GcsStoreBuilder::from_url(url)?.build()
    }

    /// A builder for a store in `bucket`.
    pub fn builder(bucket: impl Into<String>) -> GcsStoreBuilder {
        GcsStoreBuilder::new(bucket)
    }

    pub(crate) fn from_builder(cfg: GcsStoreBuilder) -> Result<GcsStore> {
        let name = cfg.describe();
        let access = AccessLog::new(cfg.access_batch);
        Ok(GcsStore {
            inner: Arc::new(Inner {
                cfg,
                clients: OnceCell::new(),
                name,
                access,
            }),
        })
    }

    pub(crate) async fn clients(&self) -> Result<&Clients> {
        self.inner
            .clients
            .get_or_try_init(|| Clients::new(&self.inner.cfg))
            .await
    }

    pub(crate) fn cfg(&self) -> &GcsStoreBuilder {
        &self.inner.cfg
    }

    /// The bucket as the official client names it.
    pub(crate) fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.inner.cfg.bucket)
    }

    pub(crate) fn entry_key(&self, key: &Key) -> String {
        format!("{}entries/{}", self.inner.cfg.prefix, key.storage_name())
    }

    pub(crate) fn blob_key(&self, digest: &Digest) -> String {
        format!("{}blobs/{}", self.inner.cfg.prefix, digest.to_hex())
    }

    fn object_path(&self, key: &str) -> String {
        format!("/storage/v1/b/{}/o/{}", self.inner.cfg.bucket, encode(key))
    }

    /// A JSON API call for a small answer, retried on temporary errors.
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<serde_json::Value>> {
        let clients = self.clients().await?;
        let cfg = self.cfg();
        let got = retrying(cfg.retries, cfg.request_timeout, || async {
            let req = clients
                .request(cfg, method.clone(), path)
                .await?
                .query(query);
            let resp = send(req).await?;
            if resp.status() == reqwest_gcs::StatusCode::NO_CONTENT {
                return Ok(serde_json::Value::Null);
            }
            let bytes = resp.bytes().await?;
            if bytes.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            serde_json::from_slice(&bytes).map_err(|e| GcsError::Decode(e.to_string()))
        })
        .await;
        match got {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into_error(what)),
        }
    }

    /// An object's metadata, or `None` when it does not exist.
    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let what = format!("checking {key}");
        let Some(v) = self
            .call(&what, Method::GET, &self.object_path(key), &[])
            .await?
        else {
            return Ok(None);
        };
        crate::core::parse_object(&v)
            .map(Some)
            .ok_or_else(|| GcsError::Decode("no object name".into()).into_error(&what))
    }

    /// Delete an object, only at `generation` when given: `false` if it was absent (or
    /// changed).
    pub(crate) async fn delete_object(&self, key: &str, generation: Option<&str>) -> Result<bool> {
        let mut query = Vec::new();
        if let Some(g) = generation {
            query.push(("ifGenerationMatch", g.to_owned()));
        }
        let clients = self.clients().await?;
        let cfg = self.cfg();
        let path = self.object_path(key);
        let got = retrying(cfg.retries, cfg.request_timeout, || async {
            let req = clients
                .request(cfg, Method::DELETE, &path)
                .await?
                .query(&query);
            send(req).await.map(|_| ())
        })
        .await;
        match got {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) || e.status() == Some(412) => Ok(false),
            Err(e) => Err(e.into_error(&format!("deleting {key}"))),
        }
    }

    /// Copy an object onto itself, which gives it a new update time; `false` if refused.
    pub(crate) async fn refresh(&self, key: &str) -> bool {
        let path = format!(
            "{}/copyTo/b/{}/o/{}",
            self.object_path(key),
            self.inner.cfg.bucket,
            encode(key)
        );
        match self
            .call(&format!("refreshing {key}"), Method::POST, &path, &[])
            .await
        {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(e) => {
                tracing::debug!("{self}: cannot refresh {key}: {e}");
                false
            }
        }
    }

    /// Read a small object whole through the official client: `None` when it does not exist.
    pub(crate) async fn read_small(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let what = format!("reading {key}");
        let clients = self.clients().await?;
        let timeout = self.cfg().request_timeout * (self.cfg().retries + 1);
        let read = async {
            let mut resp = match clients
                .storage
                .read_object(self.bucket_path(), key)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if e.http_status_code() == Some(404) => return Ok(None),
                Err(e) => return Err(sdk(&what, e)),
            };
            let size = resp.object().size.max(0) as u64;
            if size > limit {
                return Err(Error::corrupt(
                    key.to_owned(),
                    format!("{size} bytes, over the limit of {limit}"),
                ));
            }
            let mut buf = Vec::with_capacity(size as usize);
            while let Some(chunk) = resp.next().await {
                buf.extend_from_slice(&chunk.map_err(|e| sdk(&what, e))?);
            }
            Ok(Some(Bytes::from(buf)))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(crate::error::stalled(&what, timeout)),
        }
    }

    /// Write a small object in one request through the official client. With `create`, only
    /// if absent (`ifGenerationMatch=0`): `Exists` otherwise.
    pub(crate) async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        create: bool,
        metadata: &[(&str, String)],
    ) -> Result<PutOutcome> {
        let clients = self.clients().await?;
        let mut req = clients
            .storage
            .write_object(self.bucket_path(), key, body)
            .set_content_type("application/octet-stream")
            .set_metadata(metadata.iter().map(|(k, v)| (k.to_string(), v.clone())));
        if create {
            req = req.set_if_generation_match(0_i64);
        }
        let timeout = self.cfg().request_timeout * (self.cfg().retries + 1);
        match tokio::time::timeout(timeout, req.send_buffered()).await {
            Ok(Ok(_)) => Ok(PutOutcome::Written),
            Ok(Err(e)) if create && e.http_status_code() == Some(412) => Ok(PutOutcome::Exists),
            Ok(Err(e)) => Err(sdk(&format!("storing {key}"), e)),
            Err(_) => Err(crate::error::stalled(&format!("storing {key}"), timeout)),
        }
    }

    /// Every object under `prefix` with its metadata, page by page (JSON API).
    pub(crate) fn list_objects(&self, prefix: String) -> BoxStream<'static, Result<ObjectMeta>> {
        enum Page {
            Start,
            Next(String),
            Done,
        }
        let store = self.clone();
        let pages = futures::stream::unfold(Page::Start, move |state| {
            let store = store.clone();
            let prefix = prefix.clone();
            async move {
                let mut query = vec![("prefix", prefix.clone())];
                match state {
                    Page::Start => {}
                    Page::Next(t) => query.push(("pageToken", t)),
                    Page::Done => return None,
                }
                let path = format!("/storage/v1/b/{}/o", store.inner.cfg.bucket);
                let what = format!("listing {prefix}");
                match store.call(&what, Method::GET, &path, &query).await {
                    Ok(Some(v)) => {
                        let (items, next) = crate::core::parse_listing(&v);
                        let state = next.map(Page::Next).unwrap_or(Page::Done);
                        Some((Ok(items), state))
                    }
                    Ok(None) => Some((
                        Err(GcsError::Status {
                            status: 404,
                            message: "bucket not found".into(),
                        }
                        .into_error(&what)),
                        Page::Done,
                    )),
                    Err(e) => Some((Err(e), Page::Done)),
                }
            }
        });
        Box::pin(pages.flat_map(|page| match page {
            Ok(items) => futures::stream::iter(items.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }))
    }

    fn entry_meta_of(&self, o: &ObjectMeta) -> EntryMeta {
        EntryMeta {
            name: o.name.rsplit('/').next().unwrap_or_default().to_owned(),
            size: o.num(META_SIZE).unwrap_or(o.size),
            created_ms: o.num(META_CREATED).unwrap_or(o.updated_ms),
            // Object stores keep no access times: the last write stands in for the last use.
            last_access_ms: o.updated_ms,
            hits: 0,
            cost_ms: o.num(META_COST).unwrap_or(0),
        }
    }
}

#[async_trait]
impl Store for GcsStore {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.list = true;
        cap.delete = true;
        cap.trim = true;
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let object = self.entry_key(key);
        let what = format!("entry {key}");
        let bytes = match self.read_small(&object, MAX_ENTRY_BYTES as u64).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == larder_core::ErrorKind::Corrupt => {
                tracing::warn!("{self}: {what}: {e}; removed");
                self.delete_object(&object, None).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match Entry::decode(&bytes) {
            Ok(entry) => {
                if opts.record_access {
                    self.inner.access.record(self, key).await;
                }
                Ok(Some(entry))
            }
            Err(e) => {
                tracing::warn!("{self}: {what}: {e}; removed, treated as a miss");
                self.delete_object(&object, None).await?;
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
        let blobs: u64 = entry
            .contents()
            .filter(|c| c.blob_digest().is_some())
            .map(|c| c.size)
            .sum();
        let metadata = [
            (META_SIZE, (doc.len() as u64 + blobs).to_string()),
            (META_CREATED, entry.created_ms.to_string()),
            (META_COST, entry.cost_ms.to_string()),
        ];
        self.put_small(
            &self.entry_key(key),
            Bytes::from(doc),
            opts.mode == PutMode::Create,
            &metadata,
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
        // An old blob is refreshed (or reported missing), as `put_blob` does: callers that skip
        // the put of a blob found here rely on it outliving their entry.
        larder_bucket::find_missing(digests, self.inner.cfg.concurrency, |d| async move {
            crate::writer::reusable(self, &self.blob_key(&d)).await
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.delete_object(&self.entry_key(key), None).await
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let store = self.clone();
        Box::pin(
            self.list_objects(self.entries_prefix())
                .map(move |o| o.map(|o| store.entry_meta_of(&o))),
        )
    }

    async fn stats(&self) -> Result<StoreStats> {
        let sizes = |prefix| self.list_objects(prefix).map_ok(|o| o.size);
        larder_bucket::stats_from_listings(sizes(self.entries_prefix()), sizes(self.blobs_prefix()))
            .await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        larder_bucket::trim(self, opts, progress).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.access.flush(self).await
    }
}

/// The object primitives the shared access records and trim (`larder-bucket`) run on; the
/// generation stands in for S3's ETag.
#[async_trait]
impl Bucket for GcsStore {
    fn prefix(&self) -> &str {
        &self.inner.cfg.prefix
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
        Box::pin(self.list_objects(prefix.to_owned()).map(|o| {
            o.map(|o| Listed {
                key: o.name,
                size: o.size,
                modified_ms: o.updated_ms,
                version: o.generation,
            })
        }))
    }

    async fn entry_meta(&self, listed: &Listed) -> Result<Option<EntryMeta>> {
        Ok(self
            .head(&listed.key)
            .await?
            .map(|o| self.entry_meta_of(&o)))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        // Trim's own objects (index, records, lease, entries) are small; 1 GiB is a sanity cap.
        self.read_small(key, 1 << 30).await
    }

    async fn put(&self, key: &str, body: Bytes, create: bool) -> Result<PutOutcome> {
        self.put_small(key, body, create, &[]).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_object(key, None).await.map(|_| ())
    }

    /// A metadata read, then a delete conditional on the generation (`ifGenerationMatch`):
    /// Cloud Storage refuses it if the entry was re-put meanwhile. The read first also covers
    /// emulators that ignore the condition.
    async fn delete_if_version(&self, key: &str, version: &str) -> Result<bool> {
        match self.head(key).await? {
            Some(o) if o.generation == version => self.delete_object(key, Some(version)).await,
            _ => Ok(false),
        }
    }
}

//! [`S3Store`]: the [`Store`] implementation over the S3 API.
//!
//! Layout under the store's prefix `P/`:
//! - `P/entries/<storage name>`: entry documents, with user metadata `larder-size`,
//!   `larder-created-ms` and `larder-cost-ms` so listing needs no download;
//! - `P/blobs/<blake3 hex>`: blob bytes, uncompressed, verified on every read.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, retry, timeout,
};
use aws_sdk_s3::primitives::ByteStream as S3Body;
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
use tokio::sync::OnceCell;

use crate::config::{Credentials, S3StoreBuilder};
use crate::error::{sdk, status};

const META_SIZE: &str = "larder-size";
const META_CREATED: &str = "larder-created-ms";
const META_COST: &str = "larder-cost-ms";

/// A store in an S3 bucket (AWS, MinIO, SeaweedFS, any S3-compatible service). Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: S3StoreBuilder,
    clients: OnceCell<Clients>,
    name: String,
    /// Entry hits not yet written as an access record.
    pub(crate) access: AccessLog,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl fmt::Display for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3 store {}", self.inner.name)
    }
}

/// The HTTP client: hyper 1 on rustls with ring (no aws-lc build), https and http alike.
fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Two clients on the same settings: `small` also bounds each attempt by the request time-out
/// (HEAD, DELETE, LIST, entries); `big` moves blobs, bounded by connect and read time-outs only.
/// (Per-request config overrides would do the same at a cost on every request.)
struct Clients {
    big: Client,
    small: Client,
}

impl Clients {
    fn new(cfg: &S3StoreBuilder, base: aws_sdk_s3::config::Builder, has_region: bool) -> Self {
        Clients {
            big: Client::from_conf(s3_config(cfg, base.clone(), has_region, None)),
            small: Client::from_conf(s3_config(cfg, base, has_region, Some(cfg.request_timeout))),
        }
    }
}

fn s3_config(
    cfg: &S3StoreBuilder,
    base: aws_sdk_s3::config::Builder,
    has_region: bool,
    attempt_timeout: Option<std::time::Duration>,
) -> aws_sdk_s3::Config {
    let mut b = base
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .force_path_style(cfg.path_style)
        .retry_config(retry::RetryConfig::standard().with_max_attempts(cfg.retries + 1))
        .timeout_config({
            let mut t = timeout::TimeoutConfig::builder()
                .connect_timeout(cfg.connect_timeout)
                .read_timeout(cfg.read_timeout);
            t.set_operation_attempt_timeout(attempt_timeout);
            t.build()
        })
        // Blobs are verified end to end with BLAKE3; CRC32 on every byte would only cost CPU.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = &cfg.endpoint {
        b = b.endpoint_url(e);
    }
    if let Some(r) = &cfg.region {
        b = b.region(Region::new(r.clone()));
    } else if cfg.endpoint.is_some() || !has_region {
        // S3-compatible servers mostly ignore the region, but signing needs one.
        b = b.region(Region::new("us-east-1"));
    }
    if let Credentials::Static { access, secret } = &cfg.credentials {
        b = b.credentials_provider(aws_sdk_s3::config::Credentials::new(
            access.clone(),
            secret.clone(),
            None,
            None,
            "larder",
        ));
    }
    b.build()
}

impl S3Store {
    /// A store from a URL (see [`S3StoreBuilder::from_url`]), built with the environment.
    ///
    /// # Errors
    /// As [`S3StoreBuilder::from_url`] and [`S3StoreBuilder::build`].
    pub fn from_url(url: &str) -> Result<S3Store> {
        S3StoreBuilder::from_url(url)?.build()
    }

    /// A builder for a store in `bucket`.
    pub fn builder(bucket: impl Into<String>) -> S3StoreBuilder {
        S3StoreBuilder::new(bucket)
    }

    pub(crate) fn from_builder(cfg: S3StoreBuilder) -> Result<S3Store> {
        let clients = match cfg.credentials {
            Credentials::Static { .. } => OnceCell::new_with(Some(Clients::new(
                &cfg,
                aws_sdk_s3::config::Builder::new(),
                false,
            ))),
            _ => OnceCell::new(),
        };
        let name = cfg.describe();
        let access = AccessLog::new(cfg.access_batch);
        Ok(S3Store {
            inner: Arc::new(Inner {
                cfg,
                clients,
                name,
                access,
            }),
        })
    }

    /// The clients, made on first use when they need the AWS credential chain.
    async fn clients(&self) -> Result<&Clients> {
        self.inner
            .clients
            .get_or_try_init(|| async {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client())
                    .load()
                    .await;
                let base = aws_sdk_s3::config::Builder::from(&shared);
                let has_region = shared.region().is_some();
                Ok::<_, Error>(Clients::new(&self.inner.cfg, base, has_region))
            })
            .await
    }

    /// The client for blob transfers.
    pub(crate) async fn client(&self) -> Result<&Client> {
        Ok(&self.clients().await?.big)
    }

    /// The client for small requests, each attempt bounded by the request time-out.
    pub(crate) async fn small_client(&self) -> Result<&Client> {
        Ok(&self.clients().await?.small)
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.inner.cfg.bucket
    }

    pub(crate) fn cfg(&self) -> &S3StoreBuilder {
        &self.inner.cfg
    }

    pub(crate) fn entry_key(&self, key: &Key) -> String {
        format!("{}entries/{}", self.inner.cfg.prefix, key.storage_name())
    }

    pub(crate) fn blob_key(&self, digest: &Digest) -> String {
        format!("{}blobs/{}", self.inner.cfg.prefix, digest.to_hex())
    }

    /// HEAD an object: its metadata, or `None` when it does not exist.
    pub(crate) async fn head(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
        let client = self.small_client().await?;
        match client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk(&format!("checking {key}"), e)),
        }
    }

    /// GET an object with `client`: `None` when it does not exist. `what` is the operation, for
    /// the error message (`reading entry …`).
    pub(crate) async fn get_object(
        &self,
        client: &Client,
        key: &str,
        what: &str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>> {
        match client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk(what, e)),
        }
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// Delete an object (S3 deletes are idempotent).
    pub(crate) async fn delete_object(&self, key: &str) -> Result<()> {
        let client = self.small_client().await?;
        client
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| sdk(&format!("deleting {key}"), e))?;
        Ok(())
    }

    /// PUT a small object in one request. With `create`, only if absent: `Exists` otherwise.
    pub(crate) async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        create: bool,
        metadata: &[(&str, String)],
    ) -> Result<PutOutcome> {
        if create && !self.inner.cfg.create_only && self.exists(key).await? {
            return Ok(PutOutcome::Exists);
        }
        // Bodies up to 1 MiB (entries, records, small blobs) are bounded like other small
        // requests; larger ones only by the connect and read time-outs.
        let client = if body.len() <= 1 << 20 {
            self.small_client().await?
        } else {
            self.client().await?
        };
        let mut req = client
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_length(body.len() as i64)
            .body(S3Body::from(body));
        for (k, v) in metadata {
            req = req.metadata(*k, v.clone());
        }
        if create && self.inner.cfg.create_only {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            // 412: it exists. 409: a concurrent conditional write of the same key is in
            // progress, so it will exist.
            Err(e) if create && matches!(status(&e), Some(412) | Some(409)) => {
                Ok(PutOutcome::Exists)
            }
            Err(e) => Err(sdk(&format!("storing {key}"), e)),
        }
    }

    /// One page of objects under `prefix`, after `token`.
    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let client = self.small_client().await?;
        let out = client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| sdk(&format!("listing {prefix}"), e))?;
        let items = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.to_owned();
                let size = o.size().unwrap_or(0).max(0) as u64;
                let modified_ms = o
                    .last_modified()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(0)
                    .max(0) as u64;
                let version = o.e_tag().unwrap_or_default().to_owned();
                Some(Listed {
                    key,
                    size,
                    modified_ms,
                    version,
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok((items, next))
    }

    /// Every object under `prefix`, page by page.
    pub(crate) fn list_prefix(&self, prefix: String) -> BoxStream<'static, Result<Listed>> {
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
                let token = match state {
                    Page::Start => None,
                    Page::Next(t) => Some(t),
                    Page::Done => return None,
                };
                match store.list_page(&prefix, token).await {
                    Ok((items, next)) => {
                        let state = next.map(Page::Next).unwrap_or(Page::Done);
                        Some((Ok(items), state))
                    }
                    Err(e) => Some((Err(e), Page::Done)),
                }
            }
        });
        Box::pin(pages.flat_map(|page| match page {
            Ok(items) => futures::stream::iter(items.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }))
    }

    /// An entry's metadata from its listing and a HEAD (`None` if it went meanwhile).
    pub(crate) async fn entry_meta(&self, listed: &Listed) -> Result<Option<EntryMeta>> {
        let (size, modified_ms) = (listed.size, listed.modified_ms);
        let name = listed.key.rsplit('/').next().unwrap_or_default().to_owned();
        let Some(head) = self.head(&listed.key).await? else {
            // Deleted since it was listed.
            return Ok(None);
        };
        let meta = head.metadata();
        let num = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok(Some(EntryMeta {
            name,
            size: num(META_SIZE).unwrap_or(size),
            created_ms: num(META_CREATED).unwrap_or(modified_ms),
            // Object stores keep no access times: the last write stands in for the last use.
            last_access_ms: modified_ms,
            hits: 0,
            cost_ms: num(META_COST).unwrap_or(0),
        }))
    }
}

#[async_trait]
impl Store for S3Store {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.list = true;
        cap.delete = true;
        cap.trim = true;
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let object = self.entry_key(key);
        let client = self.small_client().await?;
        let what = format!("entry {key}");
        let Some(out) = self
            .get_object(client, &object, &format!("reading {what}"))
            .await?
        else {
            return Ok(None);
        };
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        if len > MAX_ENTRY_BYTES as u64 {
            tracing::warn!("{self}: {what} is {len} bytes, over the entry limit; removed");
            self.delete_object(&object).await?;
            return Ok(None);
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| crate::error::body(&format!("reading {what}"), e))?
            .into_bytes();
        match Entry::decode(&bytes) {
            Ok(entry) => {
                if opts.record_access {
                    self.inner.access.record(self, key).await;
                }
                Ok(Some(entry))
            }
            Err(e) => {
                tracing::warn!("{self}: {what}: {e}; removed, treated as a miss");
                self.delete_object(&object).await?;
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
        let object = self.entry_key(key);
        if !self.exists(&object).await? {
            return Ok(false);
        }
        self.delete_object(&object).await?;
        Ok(true)
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let store = self.clone();
        let concurrency = self.inner.cfg.concurrency;
        let metas = self
            .list_prefix(self.entries_prefix())
            .map(move |item| {
                let store = store.clone();
                async move { store.entry_meta(&item?).await }
            })
            .buffered(concurrency)
            .filter_map(|r| async move { r.transpose() });
        Box::pin(metas)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let sizes = |prefix| self.list_prefix(prefix).map_ok(|l| l.size);
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

/// The object primitives the shared access records and trim (`larder-bucket`) run on.
#[async_trait]
impl Bucket for S3Store {
    fn prefix(&self) -> &str {
        &self.inner.cfg.prefix
    }

    fn concurrency(&self) -> usize {
        self.inner.cfg.concurrency
    }

    fn eviction_policy(&self) -> &dyn larder_core::eviction::EvictionPolicy {
        self.inner.cfg.policy.as_ref()
    }

    fn trim_grace(&self) -> std::time::Duration {
        self.inner.cfg.trim_grace
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        self.list_prefix(prefix.to_owned())
    }

    async fn entry_meta(&self, listed: &Listed) -> Result<Option<EntryMeta>> {
        S3Store::entry_meta(self, listed).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let what = format!("reading {key}");
        let client = self.small_client().await?;
        let Some(out) = self.get_object(client, key, &what).await? else {
            return Ok(None);
        };
        let body = out.body.collect().await;
        Ok(Some(
            body.map_err(|e| crate::error::body(&what, e))?.into_bytes(),
        ))
    }

    async fn put(&self, key: &str, body: Bytes, create: bool) -> Result<PutOutcome> {
        self.put_small(key, body, create, &[]).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_object(key).await
    }

    /// A HEAD then a DELETE: S3 has no conditional delete that every compatible server honours,
    /// so a re-put between the two is the (small) window left.
    async fn delete_if_version(&self, key: &str, version: &str) -> Result<bool> {
        match self.head(key).await? {
            Some(h) if h.e_tag().unwrap_or_default() == version => {
                self.delete_object(key).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

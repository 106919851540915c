//! [`OpendalBucket`]: the object primitives over an OpenDAL [`Operator`] that
//! [`larder_bucket::BucketStore`] turns into a larder store. Keys are relative to the service's
//! root (the prefix is empty). On services that take an object only in one write, the store
//! keeps large blobs in parts through [`larder_bucket::InParts`].

use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use larder_bucket::store::with_times;
use larder_bucket::{Bucket, BucketSettings, Features, Listed, PutObject};
use larder_core::entry::now_ms;
use larder_core::{ByteStream, Error, PutOutcome, Result};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{Metadata, Operator};

use crate::config::OpendalStoreBuilder;
use crate::error::{is_exists, is_not_found, od};

/// Parts of one blob read ahead on streaming services. Writes go one part at a time: OpenDAL's
/// concurrent position writer (`fs`) was measured holding far more than `concurrent` parts
/// (150 MiB for a 256 MiB blob with four in flight, 26 MiB with one).
const PARTS_IN_FLIGHT: usize = 2;

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

/// A root in an OpenDAL service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OpendalBucket(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    op: Operator,
    cfg: OpendalStoreBuilder,
    /// The service takes one object in several writes (multipart, append, a file): blobs
    /// stream into one object, and are read in ranged parts.
    streaming: bool,
    /// Create-only writes are native (`if_not_exists`).
    create_only: bool,
    features: Features,
}

impl fmt::Display for OpendalBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opendal store {}", self.0.cfg.name)
    }
}

impl OpendalBucket {
    pub(crate) fn from_builder(cfg: OpendalStoreBuilder) -> Result<OpendalBucket> {
        cfg.check_service()?;
        let what = format!("configuring {}", cfg.name);
        let options = cfg.options.iter().map(|(k, v)| (k.clone(), v.0.clone()));
        let op = match &cfg.uri {
            Some(uri) => opendal::OperatorUri::new(uri, options).and_then(Operator::from_uri),
            None => Operator::via_iter(&cfg.scheme, options),
        }
        .map_err(|e| od(&what, e))?;
        let s = &cfg.settings;
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(s.request_timeout)
                    .with_io_timeout(s.read_timeout),
            )
            // Only temporary errors are retried (OpenDAL's classification); quickly, so a dead
            // remote costs a build little before it falls back to running the command.
            .layer(
                RetryLayer::new()
                    .with_max_times(s.retries as usize)
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
        let features = Features {
            // No user metadata larder can rely on: listing reads each (small) entry.
            metadata: false,
            list,
            delete: cap.delete,
            multi_write: cap.write_can_multi,
            no_trim,
        };
        Ok(OpendalBucket(Arc::new(Inner {
            streaming: cap.write_can_multi,
            create_only: cap.write_with_if_not_exists,
            features,
            op,
            cfg,
        })))
    }

    /// The OpenDAL operator under this store (for tools and tests that look behind it).
    pub fn operator(&self) -> &Operator {
        &self.0.op
    }

    /// Whether large blobs go into one object (`true`) or into parts (see the crate docs).
    pub fn streams_blobs(&self) -> bool {
        self.0.streaming
    }

    /// The stat of `key`, `None` when it does not exist.
    pub(crate) async fn stat(&self, key: &str) -> Result<Option<Metadata>> {
        match self.0.op.stat(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(od(&format!("checking {key}"), e)),
        }
    }

    /// One object as a stream of chunks. On streaming services blobs are one object: with its
    /// `size` known it is read in ranged parts, a few ahead (else a service like `fs` reads the
    /// whole range into one buffer). Elsewhere every object is at most one part, and plain
    /// reads suit servers without ranges.
    pub(crate) async fn chunks(&self, key: String, size: Option<u64>) -> Result<ByteStream> {
        let what = format!("reading {key}");
        let op = &self.0.op;
        let stream = async {
            match size {
                Some(size) if self.0.streaming => {
                    let reader = op.reader_with(&key).chunk(self.settings().part_size);
                    let reader = reader.concurrent(PARTS_IN_FLIGHT).await?;
                    reader.into_stream(0..size).await
                }
                _ => op.reader(&key).await?.into_stream(..).await,
            }
        }
        .await
        .map_err(|e| od(&what, e))?;
        Ok(Box::pin(stream.map(move |r| match r {
            Ok(buf) => Ok(buf.to_bytes()),
            Err(e) => Err(od(&what, e)),
        })))
    }

    /// Every object under `dir` (recursively where the service can), as a [`Listed`]: size,
    /// modification time (a stat when the listing lacks it: [`with_times`]) and version (see
    /// [`version`]). A directory that was never written lists as empty.
    pub(crate) fn list_dir(&self, dir: String) -> BoxStream<'static, Result<Listed>> {
        let (op, what) = (self.0.op.clone(), format!("listing {dir}"));
        let listing = async move {
            let lister = match op.lister_with(&dir).recursive(true).await {
                Ok(lister) => lister,
                Err(e) if is_not_found(&e) => return Ok(futures::stream::empty().boxed()),
                Err(e) => return Err(od(&what, e)),
            };
            let items = lister
                .filter(|item| futures::future::ready(!item.as_ref().is_err_and(is_not_found)))
                .map(move |item| {
                    let (key, meta) = item.map_err(|e| od(&what, e))?.into_parts();
                    let modified_ms = modified_ms(&meta).unwrap_or(0);
                    Ok((!meta.is_dir()).then(|| Listed {
                        modified_ms,
                        ..listed(key, &meta)
                    }))
                })
                .try_filter_map(|l| futures::future::ready(Ok(l)));
            Ok(items.boxed())
        };
        with_times(
            self.clone(),
            Box::pin(futures::stream::once(listing).try_flatten()),
        )
    }
}

/// A modification time in ms since the Unix epoch, if the service gives one.
pub(crate) fn modified_ms(meta: &Metadata) -> Option<u64> {
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
/// too young to collect, never as old, and a writer finds it fresh.
fn listed(key: String, meta: &Metadata) -> Listed {
    Listed {
        size: meta.content_length(),
        modified_ms: modified_ms(meta).unwrap_or_else(now_ms),
        version: version(meta),
        key,
        metadata: Vec::new(),
    }
}

#[async_trait]
impl Bucket for OpendalBucket {
    fn settings(&self) -> &BucketSettings {
        &self.0.cfg.settings
    }

    fn features(&self) -> Features {
        self.0.features
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        self.list_dir(prefix.to_owned())
    }

    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        Ok(self
            .stat(key)
            .await?
            .map(|meta| listed(key.to_owned(), &meta)))
    }

    /// The object stated first (its size).
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let Some(meta) = self.stat(key).await? else {
            return Ok(None);
        };
        let size = meta.content_length();
        Ok(Some((size, self.chunks(key.to_owned(), Some(size)).await?)))
    }

    /// A plain read, without the stat (on a key-value service a stat reads the value): what
    /// small objects ([`Bucket::get`]'s default) and blobs' parts are read with.
    async fn read_chunks(&self, key: &str) -> Result<Option<ByteStream>> {
        match self.chunks(key.to_owned(), None).await {
            Ok(chunks) => Ok(Some(chunks)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// With `create`, only if absent: natively where the service can; elsewhere a check first,
    /// whose race (two creators both write) is harmless because both write a complete object
    /// for the same key. No metadata is kept ([`Features::metadata`] is off).
    async fn put(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        let create = how.create;
        let native = create && self.0.create_only;
        if create && !native && self.stat(key).await?.is_some() {
            return Ok(PutOutcome::Exists);
        }
        match self.0.op.write_with(key, body).if_not_exists(native).await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if create && is_exists(&e) => Ok(PutOutcome::Exists),
            Err(e) => Err(od(&format!("writing {key}"), e)),
        }
    }

    /// Through OpenDAL's writer in parts of the part size, one at a time, closed (the object
    /// published) only after the body ended cleanly, aborted otherwise. (Services that take an
    /// object only in one write get blobs in parts from [`larder_bucket::InParts`] instead.)
    async fn put_stream(&self, key: &str, _size: u64, mut body: ByteStream) -> Result<()> {
        let what = format!("writing {key}");
        let writer = self.0.op.writer_with(key).chunk(self.settings().part_size);
        let mut writer = writer.await.map_err(|e| od(&what, e))?;
        let sent: Result<()> = async {
            while let Some(chunk) = body.next().await {
                writer.write(chunk?).await.map_err(|e| od(&what, e))?;
            }
            Ok(())
        }
        .await;
        if sent.is_ok() {
            return writer.close().await.map(drop).map_err(|e| od(&what, e));
        }
        if let Err(e) = writer.abort().await {
            tracing::warn!("{self}: cannot abort the upload of {key}: {e}");
        }
        sent
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.0.op.delete(key).await {
            Err(e) if !is_not_found(&e) => Err(od(&format!("deleting {key}"), e)),
            _ => Ok(()),
        }
    }

    /// Only if it is still older than `cutoff_ms`: a writer that uploaded the blob again since
    /// the listing (a reuse uploads it again) keeps it.
    async fn delete_stale(&self, key: &str, cutoff_ms: u64) -> Result<()> {
        let old = |meta: &Metadata| modified_ms(meta).is_some_and(|m| m < cutoff_ms);
        if self.stat(key).await?.is_some_and(|m| old(&m)) {
            self.delete(key).await?;
        }
        Ok(())
    }
}

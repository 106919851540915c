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
use opendal::{BytesRange, Metadata, Operator, Reader};

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
        let no_trim = !(cap.stat && cap.read && cap.write);
        let features = Features {
            // No user metadata larder can rely on: listing reads each (small) entry.
            metadata: false,
            list: cap.list && cfg.list.unwrap_or(true),
            delete: cap.delete,
            // The service takes one object in several writes (multipart, append, a file):
            // blobs stream into one object, and are read in ranged parts.
            multi_write: cap.write_can_multi,
            create_only: cap.write_with_if_not_exists,
            no_trim: no_trim.then_some("trim (the service cannot stat, read and write objects)"),
        };
        Ok(OpendalBucket(Arc::new(Inner { features, op, cfg })))
    }

    /// The OpenDAL operator under this store (for tools and tests that look behind it).
    pub fn operator(&self) -> &Operator {
        &self.0.op
    }

    /// Whether large blobs go into one object (`true`) or into parts (see the crate docs).
    pub fn streams_blobs(&self) -> bool {
        self.0.features.multi_write
    }

    /// The stat of `key`, `None` when it does not exist.
    pub(crate) async fn stat(&self, key: &str) -> Result<Option<Metadata>> {
        match self.0.op.stat(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(od(&format!("checking {key}"), e)),
        }
    }
}

/// The chunks in `range` of the object `key`, from its `reader` (as opened).
async fn chunks(
    key: &str,
    reader: opendal::Result<Reader>,
    range: BytesRange,
) -> Result<ByteStream> {
    let what = format!("reading {key}");
    let stream = async { reader?.into_stream(range).await }.await;
    let stream = stream.map_err(|e| od(&what, e))?;
    Ok(Box::pin(stream.map(move |r| match r {
        Ok(buf) => Ok(buf.to_bytes()),
        Err(e) => Err(od(&what, e)),
    })))
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

/// A listed or stated object; one without a modification time gets `no_time`.
fn listed(key: String, meta: &Metadata, no_time: u64) -> Listed {
    Listed {
        size: meta.content_length(),
        modified_ms: modified_ms(meta).unwrap_or(no_time),
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

    /// Every object under `prefix` (recursively where the service can), as a [`Listed`]: size,
    /// modification time (0 when the listing lacks it: [`with_times`] stats those) and version
    /// (see [`version`]). A directory that was never written lists as empty.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        let (op, dir) = (self.0.op.clone(), prefix.to_owned());
        let what = format!("listing {dir}");
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
                    Ok((!meta.is_dir()).then(|| listed(key, &meta, 0)))
                })
                .try_filter_map(|l| futures::future::ready(Ok(l)));
            Ok(items.boxed())
        };
        with_times(
            self.clone(),
            Box::pin(futures::stream::once(listing).try_flatten()),
        )
    }

    /// One without a modification time is given "now": a trim then treats it as too young to
    /// collect, never as old, and a writer finds it fresh.
    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        let stated = self.stat(key).await?;
        Ok(stated.map(|meta| listed(key.to_owned(), &meta, now_ms())))
    }

    /// The object stated first (its size). On streaming services a blob is one object, read in
    /// ranged parts, a few ahead (else a service like `fs` reads the whole range into one
    /// buffer). Elsewhere every object is at most one part, read plainly.
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let Some(size) = self.stat(key).await?.map(|meta| meta.content_length()) else {
            return Ok(None);
        };
        if !self.streams_blobs() {
            return Ok(self.read_chunks(key).await?.map(|chunks| (size, chunks)));
        }
        let reader = self.0.op.reader_with(key).chunk(self.settings().part_size);
        let reader = reader.concurrent(PARTS_IN_FLIGHT).await;
        Ok(Some((size, chunks(key, reader, (0..size).into()).await?)))
    }

    /// A plain read, without the stat (on a key-value service a stat reads the value), which
    /// suits servers without ranges: what small objects ([`Bucket::get`]'s default) and blobs'
    /// parts are read with.
    async fn read_chunks(&self, key: &str) -> Result<Option<ByteStream>> {
        match chunks(key, self.0.op.reader(key).await, (..).into()).await {
            Ok(chunks) => Ok(Some(chunks)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// No metadata is kept ([`Features::metadata`] is off).
    async fn put_object(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        let write = self.0.op.write_with(key, body).if_not_exists(how.create);
        match write.await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if how.create && is_exists(&e) => Ok(PutOutcome::Exists),
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
}

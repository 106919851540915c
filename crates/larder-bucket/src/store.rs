//! [`BucketStore`]: larder's whole [`Store`] contract over a [`Bucket`]'s object primitives,
//! written once for every object service.
//!
//! Layout under the store's prefix `P/`:
//! - `P/entries/<storage name>`: entry documents, with user metadata `larder-size`,
//!   `larder-created-ms` and `larder-cost-ms` where the service keeps metadata, so listing
//!   needs no download;
//! - `P/blobs/<blake3 hex>`: blob bytes, uncompressed, verified on every read;
//! - `P/access/…` (access records, [`crate::access`]) and `P/trim/…` ([`crate::trim`]).
//!
//! Behaviour every backend gets from here:
//! - an entry that does not decode, or is over [`MAX_ENTRY_BYTES`], is removed and read as a
//!   miss;
//! - blob reads stream and are verified against the BLAKE3 digest; a corrupt blob is deleted and
//!   the stream ends with [`Error::Corrupt`] (a miss for restores);
//! - blob writes verify before publishing: a blob up to the part size is buffered, checked and
//!   sent in one request; a larger one streams through [`crate::upload::verifying`], whose
//!   error makes the backend publish nothing;
//! - a blob found present but older than half the trim grace period is refreshed (or uploaded
//!   again), both by `put_blob` and `find_missing`, so it outlives the entry about to name it;
//! - hits are counted in memory and written as access records at flush, for remote trims.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use larder_core::entry::{MAX_ENTRY_BYTES, now_ms};
use larder_core::store::{ProgressFn, check_hash_fn};
use larder_core::verify::{VerifyHooks, verified_stream};
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, PutMode,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};

use crate::access::AccessLog;
use crate::bucket::{Bucket, Listed, PutObject};
use crate::upload;

/// Entry metadata: bytes the entry accounts for (document and blobs).
pub const META_SIZE: &str = "larder-size";
/// Entry metadata: creation time, ms since the epoch.
pub const META_CREATED: &str = "larder-created-ms";
/// Entry metadata: recompute cost in ms.
pub const META_COST: &str = "larder-cost-ms";

/// A larder store over an object service's primitives. Cheap to clone.
pub struct BucketStore<B> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    backend: B,
    /// Entry hits not yet written as an access record.
    access: AccessLog,
}

impl<B> Clone for BucketStore<B> {
    fn clone(&self) -> Self {
        BucketStore {
            inner: self.inner.clone(),
        }
    }
}

impl<B: Bucket> fmt::Debug for BucketStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketStore")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

impl<B: Bucket> fmt::Display for BucketStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.backend, f)
    }
}

/// A backend that can be opened from a store URL.
pub trait FromUrl: Sized {
    /// The backend `url` names, configured from it and the environment.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what is wrong with the URL or the environment.
    fn from_url(url: &str) -> Result<Self>;
}

impl<B: Bucket + FromUrl> BucketStore<B> {
    /// The store `url` names.
    ///
    /// # Errors
    /// As the backend's [`FromUrl::from_url`].
    pub fn from_url(url: &str) -> Result<Self> {
        B::from_url(url).map(Self::new)
    }
}

impl<B: Bucket> BucketStore<B> {
    /// A store over `backend`.
    pub fn new(backend: B) -> Self {
        let access = AccessLog::new(backend.settings().access_batch);
        BucketStore {
            inner: Arc::new(Inner { backend, access }),
        }
    }

    /// The object primitives under this store (for tools and tests that look behind it).
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The object holding the entry under `key`.
    pub fn entry_key(&self, key: &Key) -> String {
        format!("{}{}", self.backend().entries_prefix(), key.storage_name())
    }

    /// The object holding a blob.
    pub fn blob_key(&self, digest: &Digest) -> String {
        format!("{}{}", self.backend().blobs_prefix(), digest.to_hex())
    }

    fn trimmable(&self) -> bool {
        self.backend().features().why_no_trim().is_none()
    }

    fn not_supported(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            store: self.to_string(),
            operation,
        }
    }

    /// Whether the blob at `key` is there to be reused by an entry about to be written.
    /// Content-addressed: if it is there, it is these bytes (reads verify anyway). A blob old
    /// enough that a trim could be about to collect it is refreshed first, so it outlives the
    /// entry (see [`crate::trim`]); one that cannot be refreshed counts as absent, and is
    /// uploaded again (which refreshes it).
    async fn reusable(&self, key: &str) -> Result<bool> {
        let Some(head) = self.backend().head(key).await? else {
            return Ok(false);
        };
        let half_grace = self.backend().settings().trim_grace.as_millis() as u64 / 2;
        if head.modified_ms.saturating_add(half_grace) >= now_ms() {
            return Ok(true);
        }
        match self.backend().refresh(key).await {
            Ok(refreshed) => Ok(refreshed),
            Err(e) => {
                tracing::debug!("{self}: cannot refresh {key}: {e}");
                Ok(false)
            }
        }
    }

    async fn remove_entry(&self, object: &str) -> Result<()> {
        if self.backend().features().delete {
            self.backend().delete(object).await?;
        }
        Ok(())
    }
}

/// A listing fetched page by page: `page(token)` answers one page and the token of the next
/// (`None` after the last). The stream ends after the first error.
pub fn paged<F, Fut>(page: F) -> BoxStream<'static, Result<Listed>>
where
    F: Fn(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<Listed>, Option<String>)>> + Send + 'static,
{
    enum Next {
        Start,
        Token(String),
        Done,
    }
    let pages = futures::stream::unfold((Next::Start, page), |(next, page)| async move {
        let token = match next {
            Next::Start => None,
            Next::Token(t) => Some(t),
            Next::Done => return None,
        };
        match page(token).await {
            Ok((items, next)) => {
                let next = next.map_or(Next::Done, Next::Token);
                Some((Ok(items), (next, page)))
            }
            Err(e) => Some((Err(e), (Next::Done, page))),
        }
    });
    Box::pin(pages.flat_map(|page| match page {
        Ok(items) => futures::stream::iter(items.into_iter().map(Ok)).boxed(),
        Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
    }))
}

/// `listing`, with a metadata request for each object it gave no modification time (0), for
/// services whose listings may lack them; an object gone meanwhile is left out.
pub fn with_times<B: Bucket + Clone>(
    bucket: B,
    listing: BoxStream<'static, Result<Listed>>,
) -> BoxStream<'static, Result<Listed>> {
    let concurrency = bucket.settings().concurrency.max(1);
    let filled = listing.map(move |item| {
        let bucket = bucket.clone();
        async move {
            match item? {
                l if l.modified_ms == 0 => bucket.head(&l.key).await,
                l => Ok(Some(l)),
            }
        }
    });
    Box::pin(
        filled
            .buffered(concurrency)
            .try_filter_map(|l| async move { Ok(l) }),
    )
}

/// An entry's metadata from its listing, else from a metadata request, else (services that keep
/// no metadata) from the document itself; `None` if it went meanwhile or does not decode.
pub(crate) async fn entry_meta(bucket: &dyn Bucket, listed: &Listed) -> Result<Option<EntryMeta>> {
    let name = listed.name().to_owned();
    if !bucket.features().metadata {
        let Some(bytes) = bucket.get(&listed.key, MAX_ENTRY_BYTES as u64).await? else {
            return Ok(None);
        };
        let Ok(entry) = Entry::decode(&bytes) else {
            return Ok(None);
        };
        return Ok(Some(EntryMeta {
            name,
            size: bytes.len() as u64 + blob_bytes(&entry),
            created_ms: entry.created_ms,
            // No access times in these services: the last write stands in for the last use.
            last_access_ms: listed.modified_ms.max(entry.created_ms),
            hits: 0,
            cost_ms: entry.cost_ms,
        }));
    }
    let head;
    let with_meta = if listed.number(META_SIZE).is_some() {
        listed
    } else {
        match bucket.head(&listed.key).await? {
            Some(h) => {
                head = h;
                &head
            }
            // Deleted since it was listed.
            None => return Ok(None),
        }
    };
    Ok(Some(EntryMeta {
        name,
        size: with_meta.number(META_SIZE).unwrap_or(listed.size),
        created_ms: with_meta.number(META_CREATED).unwrap_or(listed.modified_ms),
        // Object stores keep no access times: the last write stands in for the last use.
        last_access_ms: listed.modified_ms,
        hits: 0,
        cost_ms: with_meta.number(META_COST).unwrap_or(0),
    }))
}

fn blob_bytes(entry: &Entry) -> u64 {
    entry
        .contents()
        .filter(|c| c.blob_digest().is_some())
        .map(|c| c.size)
        .sum()
}

#[async_trait]
impl<B: Bucket> Store for BucketStore<B> {
    fn capability(&self) -> Capability {
        let f = self.backend().features();
        let mut cap = Capability::none();
        cap.list = f.list;
        cap.delete = f.delete;
        cap.trim = f.why_no_trim().is_none();
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let object = self.entry_key(key);
        let bytes = match self.backend().get(&object, MAX_ENTRY_BYTES as u64).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e @ Error::TooLarge { .. }) => {
                tracing::warn!("{self}: entry {key}: {e}; removed, treated as a miss");
                self.remove_entry(&object).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match Entry::decode(&bytes) {
            Ok(entry) => {
                // Only where a trim will fold the records: elsewhere they would pile up.
                if opts.record_access && self.trimmable() {
                    self.inner.access.record(self.backend(), key).await;
                }
                Ok(Some(entry))
            }
            Err(e) => {
                tracing::warn!("{self}: entry {key}: {e}; removed, treated as a miss");
                self.remove_entry(&object).await?;
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
        let metadata = [
            (
                META_SIZE,
                (doc.len() as u64 + blob_bytes(entry)).to_string(),
            ),
            (META_CREATED, entry.created_ms.to_string()),
            (META_COST, entry.cost_ms.to_string()),
        ];
        let metadata: &[(&str, String)] = if self.backend().features().metadata {
            &metadata
        } else {
            &[]
        };
        let how = PutObject {
            create: opts.mode == PutMode::Create,
            metadata,
        };
        (self.backend())
            .put(&self.entry_key(key), Bytes::from(doc), how)
            .await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        check_hash_fn(self, self.capability(), [digest])?;
        let Some((size, chunks)) = self.backend().read(&self.blob_key(digest)).await? else {
            return Ok(None);
        };
        let (store, digest) = (self.clone(), *digest);
        let hooks = VerifyHooks {
            on_corrupt: Box::new(move || {
                Box::pin(async move {
                    if let Err(e) = store.backend().delete(&store.blob_key(&digest)).await {
                        tracing::warn!("{store}: cannot remove corrupt blob {digest}: {e}");
                    }
                })
            }),
            ..VerifyHooks::none()
        };
        Ok(Some(BlobRead {
            size,
            stream: verified_stream(chunks, digest, size, hooks),
        }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        // SHA-256 blobs are standalone, which remote trims do not know: refused.
        check_hash_fn(self, self.capability(), [digest])?;
        let key = self.blob_key(digest);
        if self.reusable(&key).await? {
            return Ok(PutOutcome::Exists);
        }
        if size <= self.backend().settings().part_size as u64 {
            let body = upload::buffer_verified(digest, size, payload).await?;
            // Not create-only: a concurrent writer of the same blob writes the same bytes.
            return self.backend().put(&key, body, PutObject::default()).await;
        }
        let (body, fault) = upload::verifying(*digest, size, payload);
        let sent = self.backend().put_stream(&key, size, body).await;
        // The caller's stream failing (wrong bytes, its own error) is the error to report,
        // whatever the backend made of it.
        match (fault.take(), sent) {
            (Some(e), _) => Err(e),
            (None, Ok(())) => Ok(PutOutcome::Written),
            (None, Err(e)) => Err(e),
        }
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        check_hash_fn(self, self.capability(), digests)?;
        // An old blob is refreshed (or reported missing), as `put_blob` does: callers that skip
        // the put of a blob found here rely on it outliving their entry.
        let concurrency = self.backend().settings().concurrency.max(1);
        let checked: Vec<(Digest, bool)> = futures::stream::iter(digests.iter().copied())
            .map(|d| async move { Ok::<_, Error>((d, self.reusable(&self.blob_key(&d)).await?)) })
            .buffered(concurrency)
            .try_collect()
            .await?;
        Ok(checked
            .into_iter()
            .filter_map(|(d, there)| (!there).then_some(d))
            .collect())
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        if !self.backend().features().delete {
            return Err(self.not_supported("delete"));
        }
        let object = self.entry_key(key);
        if self.backend().head(&object).await?.is_none() {
            return Ok(false);
        }
        self.backend().delete(&object).await?;
        Ok(true)
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        if !self.backend().features().list {
            let e = self.not_supported("list");
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        let store = self.clone();
        let concurrency = self.backend().settings().concurrency.max(1);
        let metas = self
            .backend()
            .list(&self.backend().entries_prefix())
            .map(move |item| {
                let store = store.clone();
                async move { entry_meta(store.backend(), &item?).await }
            })
            .buffered(concurrency)
            .filter_map(|r| async move { r.transpose() });
        Box::pin(metas)
    }

    async fn stats(&self) -> Result<StoreStats> {
        if !self.backend().features().list {
            return Err(self.not_supported("stats (it lists)"));
        }
        let mut stats = StoreStats::default();
        let mut entries = self.backend().list(&self.backend().entries_prefix());
        while let Some(item) = entries.next().await {
            stats.entries += 1;
            stats.bytes += item?.size;
        }
        let mut blobs = self.backend().list(&self.backend().blobs_prefix());
        while let Some(item) = blobs.next().await {
            stats.bytes += item?.size;
        }
        Ok(stats)
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        match self.backend().features().why_no_trim() {
            Some(why) => Err(self.not_supported(why)),
            None => crate::trim::trim(self.backend(), opts, progress).await,
        }
    }

    async fn flush(&self) -> Result<()> {
        if !self.trimmable() {
            return Ok(());
        }
        self.inner.access.flush(self.backend()).await
    }
}

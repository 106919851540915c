//! [`InParts`]: blobs in parts, for any [`Bucket`] whose service takes an object only in one
//! write (WebDAV, Redis, key-value stores; [`Features::multi_write`] off). A blob larger than
//! one part is stored as parts `P/parts/<name>/<n>` and a small manifest `P/blobs/<name>.parts`,
//! written last, only after the whole blob has verified, so a reader never sees a blob without
//! all its parts. Memory stays at one part.
//!
//! Blobs are content-addressed, so writes need not be create-only: two writers of one blob
//! write the same bytes. One race is left: a writer whose upload fails removes the parts it
//! wrote, which a concurrent writer of the same blob may have written too; that blob then reads
//! as corrupt (a part is missing), is removed, and is a miss until it is stored again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryFutureExt, TryStreamExt};
use larder_core::{ByteStream, Error, PutOutcome, Result};

use crate::bucket::{Bucket, Features, Listed, PutObject};
use crate::settings::BucketSettings;
use crate::store::FromUrl;
use crate::upload::send_parts;

const MANIFEST_MAGIC: &str = "larder-parts 1";

/// The most a manifest may hold.
const MANIFEST_LIMIT: u64 = 4096;

/// A [`Bucket`] that stores large blobs in parts when its service cannot take one object in
/// several writes, and passes every call straight through when it can. Cheap to clone.
pub struct InParts<B> {
    inner: Arc<B>,
    on: bool,
}

impl<B> Clone for InParts<B> {
    fn clone(&self) -> Self {
        InParts {
            inner: Arc::clone(&self.inner),
            on: self.on,
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for InParts<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("InParts");
        d.field("inner", &self.inner).field("on", &self.on).finish()
    }
}

impl<B: fmt::Display> fmt::Display for InParts<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl<B: Bucket + FromUrl> FromUrl for InParts<B> {
    fn from_url(url: &str) -> Result<Self> {
        B::from_url(url).map(InParts::new)
    }
}

/// A manifest's blob size and number of parts.
fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (magic, nums) = text.trim_end().split_once('\n')?;
    let (size, parts) = nums.split_once(' ')?;
    (magic == MANIFEST_MAGIC).then_some((size.parse().ok()?, parts.parse().ok()?))
}

impl<B: Bucket> InParts<B> {
    /// `inner`, storing blobs in parts unless its service takes one object in several writes.
    pub fn new(inner: B) -> Self {
        let on = !inner.features().multi_write;
        InParts {
            inner: Arc::new(inner),
            on,
        }
    }

    /// The bucket underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Whether blobs over one part are stored in parts.
    pub fn in_parts(&self) -> bool {
        self.on
    }

    /// The manifest of the blob stored in parts under `name` (a digest's text).
    pub fn manifest_key(&self, name: impl fmt::Display) -> String {
        format!("{}{name}.parts", self.blobs_prefix())
    }

    /// Part `n` of the blob stored in parts under `name`.
    pub fn part_key(&self, name: impl fmt::Display, n: u64) -> String {
        format!("{}{name}/{n:06}", self.parts_prefix())
    }

    fn parts_prefix(&self) -> String {
        format!("{}parts/", self.prefix())
    }

    /// The name of a blob key whose blob may be stored in parts (when parts are on).
    fn parted<'k>(&self, key: &'k str) -> Option<&'k str> {
        let name = key.strip_prefix(&self.blobs_prefix())?;
        (self.on && !name.is_empty() && !name.contains('.')).then_some(name)
    }

    /// Delete every one of `keys`, a few at a time.
    async fn remove_all(&self, keys: impl Iterator<Item = String> + Send) -> Result<()> {
        futures::stream::iter(keys)
            .map(|k| async move { self.inner.delete(&k).await })
            .buffer_unordered(self.settings().concurrency.max(1))
            .try_collect()
            .await
    }

    /// Store `size` bytes from `body` as parts, then the manifest naming them; on any error
    /// the parts written are removed (best effort) and nothing is published.
    async fn write(&self, name: &str, size: u64, body: ByteStream) -> Result<()> {
        let mut started = 0;
        let sent: Result<()> = async {
            let part_size = self.settings().part_size;
            // One part at a time: memory stays at one part.
            let parts = send_parts(body, part_size, 1, |n, part| {
                started = n + 1;
                let key = self.part_key(name, n);
                async move { self.inner.put(&key, part, PutObject::default()).await }
            });
            let n = parts.await?.len();
            let manifest = format!("{MANIFEST_MAGIC}\n{size} {n}\n");
            let key = self.manifest_key(name);
            self.inner
                .put(&key, manifest.into(), PutObject::default())
                .await?;
            Ok(())
        }
        .await;
        if sent.is_err()
            && let Err(e) = self
                .remove_all((0..started).map(|i| self.part_key(name, i)))
                .await
        {
            tracing::warn!("{self}: cannot remove the parts of a failed upload of {name}: {e}");
        }
        sent
    }

    /// A blob from its manifest and parts, in order. A broken manifest is removed and read as
    /// a miss; a part that vanished under a manifest is damage, not a passing failure: the blob
    /// is removed and the stream ends with [`Error::Corrupt`].
    async fn read_parts(&self, name: &str) -> Result<Option<(u64, ByteStream)>> {
        let manifest = self.manifest_key(name);
        let Some(bytes) = self.inner.get(&manifest, MANIFEST_LIMIT).await? else {
            return Ok(None);
        };
        let Some((size, parts)) = decode(&bytes) else {
            tracing::warn!("{self}: {manifest} does not decode; removed, treated as a miss");
            self.inner.delete(&manifest).await?;
            return Ok(None);
        };
        let (opener, checker, name) = (self.clone(), self.clone(), name.to_owned());
        let blob = format!("{}{name}", self.blobs_prefix());
        let chunks = futures::stream::iter(0..parts)
            .then(move |i| {
                let (b, key) = (opener.clone(), opener.part_key(&name, i));
                async move {
                    let gone = || Error::NotFound { what: key.clone() };
                    b.inner.read_chunks(&key).await?.ok_or_else(gone)
                }
            })
            .try_flatten()
            .then(move |item| {
                let (b, blob) = (checker.clone(), blob.clone());
                async move {
                    let Err(Error::NotFound { what }) = item else {
                        return item;
                    };
                    if let Err(e) = b.delete(&blob).await {
                        tracing::warn!("{b}: cannot remove {blob}, which lost a part: {e}");
                    }
                    let reason = format!("a part is missing ({what})");
                    let name = blob.strip_prefix(&b.blobs_prefix()).unwrap_or(&blob);
                    Err(Error::corrupt(format!("blob {name}"), reason))
                }
            });
        Ok(Some((size, Box::pin(chunks))))
    }

    /// The manifest first (without it the parts are unreachable leftovers, never half a blob),
    /// then the parts it names.
    async fn remove(&self, name: &str) -> Result<()> {
        let manifest = self.manifest_key(name);
        let parts = match self.inner.get(&manifest, MANIFEST_LIMIT).await? {
            Some(bytes) => decode(&bytes).map_or(0, |(_, n)| n),
            None => 0,
        };
        self.inner.delete(&manifest).await?;
        self.remove_all((0..parts).map(|i| self.part_key(name, i)))
            .await
    }

    /// A trim's removal of an unreferenced blob in parts: the manifest if it is older than
    /// `cutoff_ms`, then the parts older than that (listed: parts no manifest names go too);
    /// nothing if the blob was stored again since the listing.
    async fn remove_stale(&self, name: &str, cutoff_ms: u64) -> Result<()> {
        let manifest = self.manifest_key(name);
        match self.inner.head(&manifest).await? {
            Some(m) if m.modified_ms >= cutoff_ms => return Ok(()),
            Some(_) => self.inner.delete(&manifest).await?,
            None => {}
        }
        let parts = self.inner.list(&format!("{}{name}/", self.parts_prefix()));
        let old = parts
            .try_filter_map(|p| async move { Ok((p.modified_ms < cutoff_ms).then_some(p.key)) });
        let old: Vec<String> = old.try_collect().await?;
        self.remove_all(old.into_iter()).await
    }
}

/// Whole blobs (`B/<name>`), manifests (`B/<name>.parts`) and parts (`P/<name>/<n>`) grouped
/// into one [`Listed`] per blob, `B/<name>`: sizes summed, the latest modification. So a trim
/// counts and collects a blob in parts as a whole, and parts no manifest names (a failed upload
/// that could not clean up) show up too, and go once old.
fn by_blob(objects: Vec<Listed>, blobs: &str, parts: &str) -> Vec<Listed> {
    let mut grouped: BTreeMap<String, Listed> = BTreeMap::new();
    for item in objects {
        let name = match item.key.strip_prefix(parts) {
            Some(rest) => rest.rsplit_once('/').map_or(rest, |(name, _)| name),
            None => item.key.strip_prefix(blobs).unwrap_or(&item.key),
        };
        let key = format!("{blobs}{}", name.trim_end_matches(".parts"));
        let e = grouped.entry(key.clone()).or_insert(Listed {
            key,
            ..Listed::default()
        });
        e.size += item.size;
        e.modified_ms = e.modified_ms.max(item.modified_ms);
    }
    grouped.into_values().collect()
}

#[async_trait]
impl<B: Bucket> Bucket for InParts<B> {
    fn settings(&self) -> &BucketSettings {
        self.inner.settings()
    }

    fn features(&self) -> Features {
        self.inner.features()
    }

    /// Blobs in parts list as one blob each.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        let (blobs, parts) = (self.blobs_prefix(), self.parts_prefix());
        if !self.on || prefix != blobs {
            return self.inner.list(prefix);
        }
        let all = self.inner.list(&blobs).chain(self.inner.list(&parts));
        let grouped = all.try_collect().map_ok(move |all| {
            futures::stream::iter(by_blob(all, &blobs, &parts).into_iter().map(Ok))
        });
        Box::pin(futures::stream::once(grouped).try_flatten())
    }

    /// A blob stored in parts answers with its manifest.
    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        let found = self.inner.head(key).await?;
        let Some(name) = self.parted(key).filter(|_| found.is_none()) else {
            return Ok(found);
        };
        let manifest = self.inner.head(&self.manifest_key(name)).await?;
        Ok(manifest.map(|m| Listed {
            key: key.to_owned(),
            ..m
        }))
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        self.inner.get(key, limit).await
    }

    /// The object, else a blob's manifest and parts.
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        match (self.inner.read(key).await?, self.parted(key)) {
            (None, Some(name)) => self.read_parts(name).await,
            (found, _) => Ok(found),
        }
    }

    async fn put_object(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        self.inner.put_object(key, body, how).await
    }

    /// A blob in parts, then its manifest.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<()> {
        match self.parted(key) {
            Some(name) => self.write(name, size, body).await,
            None => self.inner.put_stream(key, size, body).await,
        }
    }

    async fn refresh(&self, key: &str) -> Result<bool> {
        self.inner.refresh(key).await
    }

    /// A blob goes as a whole: the object, or the manifest and then the parts it names.
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await?;
        match self.parted(key) {
            Some(name) => self.remove(name).await,
            None => Ok(()),
        }
    }

    async fn delete_if_version(&self, key: &str, version: &str) -> Result<bool> {
        self.inner.delete_if_version(key, version).await
    }

    /// The object as the bucket underneath removes a stale blob, then the blob's parts.
    async fn delete_stale(&self, key: &str, cutoff_ms: u64) -> Result<()> {
        self.inner.delete_stale(key, cutoff_ms).await?;
        match self.parted(key) {
            Some(name) => self.remove_stale(name, cutoff_ms).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_decode_and_reject_garbage() {
        let good = format!("{MANIFEST_MAGIC}\n{} 385\n", 3u64 << 30);
        assert_eq!(decode(good.as_bytes()), Some((3 << 30, 385)));
        for bad in [
            &b"larder-parts 2\n1 1\n"[..],
            b"larder-parts 1\nx 1\n",
            &[0xff, 0xfe],
        ] {
            assert_eq!(decode(bad), None);
        }
    }

    #[test]
    fn blobs_in_parts_list_as_one_blob() {
        let (a, b, c) = ("aa".repeat(32), "bb".repeat(32), "cc".repeat(32));
        let obj = |key: String, size, modified_ms| Listed {
            key,
            size,
            modified_ms,
            ..Listed::default()
        };
        let got = by_blob(
            vec![
                obj(format!("p/blobs/{a}"), 10, 5),
                obj(format!("p/blobs/{b}.parts"), 20, 9),
                obj(format!("p/parts/{b}/000000"), 100, 7),
                obj(format!("p/parts/{b}/000001"), 50, 8),
                // Parts no manifest names.
                obj(format!("p/parts/{c}/000000"), 1, 3),
            ],
            "p/blobs/",
            "p/parts/",
        );
        let summary: Vec<(String, u64, u64)> = got
            .into_iter()
            .map(|l| (l.key, l.size, l.modified_ms))
            .collect();
        let want = [(a, 10, 5), (b, 170, 9), (c, 1, 3)];
        let want: Vec<_> = want.map(|(h, s, m)| (format!("p/blobs/{h}"), s, m)).into();
        assert_eq!(summary, want);
    }
}

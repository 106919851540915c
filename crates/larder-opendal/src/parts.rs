//! Blobs in parts, on services that take an object only in one write (WebDAV, Redis, key-value
//! stores): a blob larger than one part is stored as parts `parts/<hex>/<n>` and a small
//! manifest `blobs/<hex>.parts`, written last, only after the whole blob has verified, so a
//! reader never sees a blob without all its parts. Memory stays at one part.
//!
//! Blobs are content-addressed, so writes need not be create-only: two writers of one blob
//! write the same bytes. One race is left: a writer whose upload fails removes the parts it
//! wrote, which a concurrent writer of the same blob may have written too; that blob then reads
//! as corrupt (a part is missing), is removed, and is a miss until it is stored again.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use larder_bucket::{Bucket, Listed};
use larder_core::{ByteStream, Error, Result};

use crate::backend::{OpendalBucket, modified_ms};

const MANIFEST_MAGIC: &str = "larder-parts 1";

/// The most a manifest may hold.
const MANIFEST_LIMIT: u64 = 4096;

pub(crate) fn manifest_key(hex: &str) -> String {
    format!("blobs/{hex}.parts")
}

pub(crate) fn part_key(hex: &str, n: u64) -> String {
    format!("parts/{hex}/{n:06}")
}

fn encode(size: u64, parts: u64) -> String {
    format!("{MANIFEST_MAGIC}\n{size} {parts}\n")
}

/// A manifest's blob size and number of parts.
fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (magic, nums) = text.trim_end().split_once('\n')?;
    let (size, parts) = nums.split_once(' ')?;
    (magic == MANIFEST_MAGIC).then_some((size.parse().ok()?, parts.parse().ok()?))
}

/// Store `size` bytes from `body` as parts, then the manifest naming them; on any error the
/// parts written are removed (best effort) and nothing is published.
pub(crate) async fn write(b: &OpendalBucket, hex: &str, size: u64, body: ByteStream) -> Result<()> {
    let mut parts = std::pin::pin!(larder_bucket::upload::parts(body, b.settings().part_size));
    let mut n = 0u64;
    let sent: Result<()> = async {
        while let Some(part) = parts.next().await {
            let key = part_key(hex, n);
            let written = b.operator().write(&key, part?).await;
            written.map_err(|e| crate::error::od(&format!("writing {key}"), e))?;
            n += 1;
        }
        let manifest = encode(size, n).into();
        b.put(&manifest_key(hex), manifest, false, &[]).await?;
        Ok(())
    }
    .await;
    if sent.is_err()
        && let Err(e) = b
            .remove_all((0..=n).map(|i| part_key(hex, i)).collect())
            .await
    {
        tracing::warn!("{b}: cannot remove the parts of a failed upload of {hex}: {e}");
    }
    sent
}

/// A blob from its manifest and parts, in order. A broken manifest is removed and read as a
/// miss; a part that vanished under a manifest is damage, not a passing failure: the blob is
/// removed and the stream ends with [`Error::Corrupt`].
pub(crate) async fn read(b: &OpendalBucket, hex: &str) -> Result<Option<(u64, ByteStream)>> {
    let manifest = manifest_key(hex);
    let Some(bytes) = b.get(&manifest, MANIFEST_LIMIT).await? else {
        return Ok(None);
    };
    let Some((size, parts)) = decode(&bytes) else {
        tracing::warn!("{b}: {manifest} does not decode; removed, treated as a miss");
        b.remove(&manifest).await?;
        return Ok(None);
    };
    let (opener, checker, hex) = (b.clone(), b.clone(), hex.to_owned());
    let blob = format!("blobs/{hex}");
    let chunks = futures::stream::iter(0..parts)
        .then(move |i| {
            let (b, key) = (opener.clone(), part_key(&hex, i));
            async move { b.chunks(key, None).await }
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
                Err(Error::corrupt(blob.replacen("blobs/", "blob ", 1), reason))
            }
        });
    Ok(Some((size, Box::pin(chunks))))
}

/// The manifest first (without it the parts are unreachable leftovers, never half a blob),
/// then the parts it names.
pub(crate) async fn remove(b: &OpendalBucket, hex: &str) -> Result<()> {
    let manifest = manifest_key(hex);
    let parts = match b.get(&manifest, MANIFEST_LIMIT).await? {
        Some(bytes) => decode(&bytes).map_or(0, |(_, n)| n),
        None => 0,
    };
    b.remove(&manifest).await?;
    b.remove_all((0..parts).map(|i| part_key(hex, i)).collect())
        .await
}

/// A trim's removal of an unreferenced blob in parts: the manifest if it is older than
/// `cutoff_ms`, then the parts older than that (listed: parts no manifest names go too);
/// nothing if the blob was stored again since the listing.
pub(crate) async fn remove_stale(b: &OpendalBucket, hex: &str, cutoff_ms: u64) -> Result<()> {
    let manifest = manifest_key(hex);
    match b.stat(&manifest).await? {
        Some(meta) if modified_ms(&meta).is_none_or(|m| m >= cutoff_ms) => return Ok(()),
        Some(_) => b.remove(&manifest).await?,
        None => {}
    }
    let parts = b.list_dir(format!("parts/{hex}/"));
    let old_parts =
        parts.try_filter_map(|p| async move { Ok((p.modified_ms < cutoff_ms).then_some(p.key)) });
    b.remove_all(old_parts.try_collect().await?).await
}

/// Whole blobs (`blobs/<hex>`), manifests (`blobs/<hex>.parts`) and parts
/// (`parts/<hex>/<n>`) grouped into one [`Listed`] per digest, `blobs/<hex>`: sizes summed,
/// the latest modification. So a trim counts and collects a blob in parts as a whole, and parts
/// no manifest names (a failed upload that could not clean up) show up too, and go once old.
pub(crate) fn by_digest(objects: Vec<Listed>) -> Vec<Listed> {
    let mut grouped: BTreeMap<String, Listed> = BTreeMap::new();
    for item in objects {
        let hex = match item.key.strip_prefix("parts/") {
            Some(rest) => rest.split('/').next().unwrap_or_default(),
            None => item.name().trim_end_matches(".parts"),
        };
        let key = format!("blobs/{hex}");
        let e = grouped.entry(key.clone()).or_insert(Listed {
            key,
            ..Listed::default()
        });
        e.size += item.size;
        e.modified_ms = e.modified_ms.max(item.modified_ms);
    }
    grouped.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_reject_garbage() {
        assert_eq!(
            decode(encode(3 << 30, 385).as_bytes()),
            Some((3 << 30, 385))
        );
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
        let got = by_digest(vec![
            obj(format!("blobs/{a}"), 10, 5),
            obj(format!("blobs/{b}.parts"), 20, 9),
            obj(format!("parts/{b}/000000"), 100, 7),
            obj(format!("parts/{b}/000001"), 50, 8),
            // Parts no manifest names.
            obj(format!("parts/{c}/000000"), 1, 3),
        ]);
        let summary: Vec<(String, u64, u64)> = got
            .into_iter()
            .map(|l| (l.key, l.size, l.modified_ms))
            .collect();
        let want = [(a, 10, 5), (b, 170, 9), (c, 1, 3)];
        let want: Vec<_> = want.map(|(h, s, m)| (format!("blobs/{h}"), s, m)).into();
        assert_eq!(summary, want);
    }
}

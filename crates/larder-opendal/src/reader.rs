//! Downloads: a blob streams out of its object (or its parts, in order), verified against its
//! BLAKE3 digest as it goes.
//!
//! A blob whose bytes do not match (wrong length or digest) is deleted and the stream ends with
//! [`Error::Corrupt`], so the caller sees a miss and the next put heals it. A broken manifest
//! is removed and read as a miss. A transfer that fails or stalls (OpenDAL's I/O time-out) is
//! an error of its own kind, usually temporary: the stored blob may be fine.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use larder_core::verify::{VerifyHooks, verified_stream};
use larder_core::{BlobRead, ByteStream, Digest, Error, Result};

use crate::backend::OpendalStore;
use crate::error::{is_not_found, od};

/// The manifest of a blob stored in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) size: u64,
    pub(crate) parts: u64,
}

const MANIFEST_MAGIC: &str = "larder-parts 1";

impl Manifest {
    pub(crate) fn encode(&self) -> String {
        format!("{MANIFEST_MAGIC}\n{} {}\n", self.size, self.parts)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Manifest> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MANIFEST_MAGIC {
            return None;
        }
        let mut nums = lines.next()?.split(' ');
        let size = nums.next()?.parse().ok()?;
        let parts = nums.next()?.parse().ok()?;
        Some(Manifest { size, parts })
    }
}

/// One object as a stream of chunks.
async fn object_stream(store: &OpendalStore, path: String) -> Result<ByteStream> {
    let what = format!("reading {path}");
    // Streaming services hold blobs as one object: read it in ranged parts, a few ahead, or a
    // service like `fs` would read the whole range into one buffer. Elsewhere every object is
    // at most one part (larger blobs are in parts), and plain reads suit servers without
    // ranges.
    let reader = if store.streams_blobs() {
        store
            .op()
            .reader_with(&path)
            .chunk(store.part_size())
            .concurrent(crate::writer::PARTS_IN_FLIGHT)
            .await
    } else {
        store.op().reader(&path).await
    }
    .map_err(|e| od(&what, e))?;
    let stream = reader.into_stream(..).await.map_err(|e| od(&what, e))?;
    Ok(Box::pin(stream.map(move |r| match r {
        Ok(buf) => Ok(buf.to_bytes()),
        Err(e) => Err(od(&what, e)),
    })))
}

/// Remove every form of a blob (best effort: a failure is only logged).
pub(crate) async fn remove_blob(store: &OpendalStore, digest: &Digest, parts: Option<u64>) {
    let mut paths = vec![OpendalStore::blob_path(digest)];
    if let Some(n) = parts {
        // The manifest first: without it the parts are unreachable leftovers, never half a blob.
        paths.push(OpendalStore::manifest_path(digest));
        paths.extend((0..n).map(|i| OpendalStore::part_path(digest, i)));
    }
    for p in paths {
        if let Err(e) = store.remove(&p).await {
            tracing::warn!("{store}: cannot remove {p} of corrupt blob {digest}: {e}");
        }
    }
}

/// Verify a blob's bytes as they stream (see [`verified_stream`]); a damaged blob is removed
/// with all its `parts`, and a part that vanished under a manifest is damage, not a passing
/// failure.
fn verified(
    inner: ByteStream,
    store: &OpendalStore,
    digest: Digest,
    size: u64,
    parts: Option<u64>,
) -> ByteStream {
    let (s1, s2) = (store.clone(), store.clone());
    let hooks = VerifyHooks {
        on_corrupt: Box::new(move || {
            Box::pin(async move { remove_blob(&s1, &digest, parts).await })
        }),
        on_error: Box::new(move |e| {
            Box::pin(async move {
                match e {
                    Error::NotFound { what } if parts.is_some() => {
                        remove_blob(&s2, &digest, parts).await;
                        Error::corrupt(
                            format!("blob {digest}"),
                            format!("a part is missing ({what})"),
                        )
                    }
                    other => other,
                }
            })
        }),
    };
    verified_stream(inner, digest, size, hooks)
}

pub(crate) async fn get_blob(store: &OpendalStore, digest: &Digest) -> Result<Option<BlobRead>> {
    let path = OpendalStore::blob_path(digest);
    match store.op().stat(&path).await {
        Ok(meta) => {
            let size = meta.content_length();
            let inner = object_stream(store, path).await?;
            return Ok(Some(BlobRead {
                size,
                stream: verified(inner, store, *digest, size, None),
            }));
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(od(&format!("checking blob {digest}"), e)),
    }
    if store.streams_blobs() {
        return Ok(None);
    }
    let manifest_path = OpendalStore::manifest_path(digest);
    let Some(bytes) = store.read_small(&manifest_path).await? else {
        return Ok(None);
    };
    let Some(manifest) = Manifest::decode(&bytes) else {
        tracing::warn!("{store}: {manifest_path} does not decode; removed, treated as a miss");
        store.remove(&manifest_path).await?;
        return Ok(None);
    };
    let part_store = store.clone();
    let digest_copy = *digest;
    let parts = futures::stream::iter(0..manifest.parts)
        .then(move |i| {
            let store = part_store.clone();
            async move { object_stream(&store, OpendalStore::part_path(&digest_copy, i)).await }
        })
        .try_flatten();
    let inner: ByteStream = Box::pin(parts.map_ok(|b: Bytes| b));
    Ok(Some(BlobRead {
        size: manifest.size,
        stream: verified(inner, store, *digest, manifest.size, Some(manifest.parts)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_reject_garbage() {
        let m = Manifest {
            size: 3 << 30,
            parts: 385,
        };
        assert_eq!(Manifest::decode(m.encode().as_bytes()), Some(m));
        assert_eq!(Manifest::decode(b"larder-parts 2\n1 1\n"), None);
        assert_eq!(Manifest::decode(b"larder-parts 1\nx 1\n"), None);
        assert_eq!(Manifest::decode(&[0xff, 0xfe]), None);
    }
}

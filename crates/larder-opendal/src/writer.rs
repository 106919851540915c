//! Uploads, with memory bounded by the part size whatever the blob's size.
//!
//! - Services that take one object in several writes (a file, a multipart or block upload):
//!   the blob streams through OpenDAL's [`Writer`](opendal::Writer) in parts of `part_size`, one
//!   at a time. The writer is closed (the object published) only once the bytes are known
//!   good; otherwise it is aborted.
//! - Services that take an object only in one write (WebDAV, Redis, key-value stores): a blob up
//!   to one part goes up in one write after it has verified; a larger one goes up as parts
//!   `parts/<hex>/<n>`, one at a time, and its manifest `blobs/<hex>.parts` is written last,
//!   only after the whole blob has verified. A reader never sees a blob without all its parts.
//!
//! Blobs are content-addressed, so writes need not be create-only: two writers of one blob write
//! the same bytes, and whichever lands last leaves a correct blob. A blob already stored is not
//! written again. One race is left for blobs in parts: a writer whose upload fails removes the
//! parts it wrote, which a concurrent writer of the same blob may have written too; that blob then
//! reads as corrupt (a part is missing), is removed, and is a miss until it is stored again.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use larder_core::{ByteStream, Digest, Error, PutOutcome, Result};

use crate::backend::OpendalStore;
use crate::error::od;
use crate::reader::Manifest;

/// Parts of one blob read ahead on streaming services. Writes go one part at a time: OpenDAL's
/// concurrent position writer (`fs`) was measured holding far more than `concurrent` parts
/// (150 MiB for a 256 MiB blob with four in flight, 26 MiB with one).
pub(crate) const PARTS_IN_FLIGHT: usize = 2;

/// The stream did not match what was announced: its length if that differs, else its digest.
fn mismatch(digest: &Digest, got: u64, size: u64) -> Error {
    if got != size {
        Error::invalid(format!(
            "blob {digest}: the stream had {got} bytes, {size} were announced"
        ))
    } else {
        Error::invalid(format!(
            "blob {digest}: the bytes do not hash to this digest"
        ))
    }
}

pub(crate) async fn put_blob(
    store: &OpendalStore,
    digest: &Digest,
    size: u64,
    payload: ByteStream,
) -> Result<PutOutcome> {
    // Content-addressed: if it is there, it is these bytes (reads verify anyway). One old
    // enough that a trim could collect it is uploaded again (see `OpendalStore::blob_fresh`).
    if store.blob_fresh(digest).await? {
        return Ok(PutOutcome::Exists);
    }
    if store.streams_blobs() {
        streamed(store, digest, size, payload).await
    } else if size <= store.part_size() as u64 {
        let body = whole(digest, size, payload).await?;
        store
            .write_small(&OpendalStore::blob_path(digest), body, false)
            .await
    } else {
        in_parts(store, digest, size, payload).await
    }
}

/// A small blob into memory, verified.
async fn whole(digest: &Digest, size: u64, mut payload: ByteStream) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(size as usize);
    let mut hasher = DigestWriter::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        if hasher.len() > size {
            return Err(mismatch(digest, hasher.len(), size));
        }
        buf.extend_from_slice(&chunk);
    }
    if hasher.len() != size || hasher.finish() != *digest {
        return Err(mismatch(digest, hasher.len(), size));
    }
    Ok(buf.freeze())
}

async fn streamed(
    store: &OpendalStore,
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<PutOutcome> {
    let path = OpendalStore::blob_path(digest);
    let what = format!("writing blob {digest}");
    let mut writer = store
        .op()
        .writer_with(&path)
        .chunk(store.part_size())
        .await
        .map_err(|e| od(&what, e))?;
    let mut hasher = DigestWriter::new();
    let result: Result<()> = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            if hasher.len() > size {
                return Err(mismatch(digest, hasher.len(), size));
            }
            writer.write(chunk).await.map_err(|e| od(&what, e))?;
        }
        if hasher.len() != size || hasher.finish() != *digest {
            return Err(mismatch(digest, hasher.len(), size));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            writer.close().await.map_err(|e| od(&what, e))?;
            Ok(PutOutcome::Written)
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!("{store}: cannot abort the upload of blob {digest}: {abort}");
            }
            Err(e)
        }
    }
}

async fn in_parts(
    store: &OpendalStore,
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<PutOutcome> {
    let part_size = store.part_size();
    let mut hasher = DigestWriter::new();
    let mut buf = BytesMut::with_capacity(part_size);
    let mut parts = 0u64;
    let result: Result<()> = async {
        while let Some(chunk) = payload.next().await {
            let mut chunk = chunk?;
            hasher.update(&chunk);
            if hasher.len() > size {
                return Err(mismatch(digest, hasher.len(), size));
            }
            while !chunk.is_empty() {
                let take = (part_size - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if buf.len() == part_size {
                    let part = std::mem::replace(&mut buf, BytesMut::with_capacity(part_size));
                    write_part(store, digest, parts, part.freeze()).await?;
                    parts += 1;
                }
            }
        }
        if hasher.len() != size || hasher.finish() != *digest {
            return Err(mismatch(digest, hasher.len(), size));
        }
        if !buf.is_empty() {
            write_part(store, digest, parts, std::mem::take(&mut buf).freeze()).await?;
            parts += 1;
        }
        let manifest = Manifest { size, parts };
        store
            .write_small(
                &OpendalStore::manifest_path(digest),
                Bytes::from(manifest.encode()),
                false,
            )
            .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(PutOutcome::Written),
        Err(e) => {
            // No manifest names these parts; remove them (best effort).
            for n in 0..=parts {
                let p = OpendalStore::part_path(digest, n);
                if let Err(err) = store.remove(&p).await {
                    tracing::warn!("{store}: cannot remove {p} of a failed upload: {err}");
                }
            }
            Err(e)
        }
    }
}

async fn write_part(store: &OpendalStore, digest: &Digest, n: u64, part: Bytes) -> Result<()> {
    let path = OpendalStore::part_path(digest, n);
    store
        .op()
        .write(&path, part)
        .await
        .map_err(|e| od(&format!("writing part {n} of blob {digest}"), e))?;
    Ok(())
}

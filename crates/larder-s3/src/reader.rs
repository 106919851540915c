//! Downloads: one streamed `GetObject` per blob, verified against its BLAKE3 digest as it goes.
//!
//! A blob whose bytes do not match (wrong length or digest) is deleted from the bucket and the
//! stream ends with [`Error::Corrupt`], so the caller sees a miss and the next put heals it. A
//! body cut short or stalled is a temporary error (the object may be fine).

use larder_core::verify::{VerifyHooks, verified_stream};
use larder_core::{BlobRead, Digest, Result};

use crate::backend::S3Store;
use crate::error::{body, stalled};

pub(crate) async fn get_blob(store: &S3Store, digest: &Digest) -> Result<Option<BlobRead>> {
    let key = store.blob_key(digest);
    let client = store.client().await?;
    let Some(out) = store
        .get_object(client, &key, &format!("reading blob {digest}"))
        .await?
    else {
        return Ok(None);
    };
    let size = out.content_length().unwrap_or(0).max(0) as u64;
    let read_timeout = store.cfg().read_timeout;
    let what = format!("reading blob {digest}");
    // The body's chunks, each bounded by the read time-out (a stalled body is temporary).
    let chunks = futures::stream::unfold(out.body, move |mut b| {
        let what = what.clone();
        async move {
            match tokio::time::timeout(read_timeout, b.try_next()).await {
                Err(_) => Some((Err(stalled(&what, read_timeout)), b)),
                Ok(Ok(Some(chunk))) => Some((Ok(chunk), b)),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((Err(body(&what, e)), b)),
            }
        }
    });
    let (store2, digest2) = (store.clone(), *digest);
    let hooks = VerifyHooks {
        on_corrupt: Box::new(move || {
            Box::pin(async move {
                let key = store2.blob_key(&digest2);
                if let Err(e) = store2.delete_object(&key).await {
                    tracing::warn!("{store2}: cannot remove corrupt blob {digest2}: {e}");
                }
            })
        }),
        ..VerifyHooks::none()
    };
    Ok(Some(BlobRead {
        size,
        stream: verified_stream(chunks, *digest, size, hooks),
    }))
}

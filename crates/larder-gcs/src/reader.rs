//! Downloads: one streamed read per blob through the official client, verified against its
//! BLAKE3 digest as it goes.
//!
//! A blob whose bytes do not match (wrong length or digest) is deleted from the bucket and the
//! stream ends with [`Error::Corrupt`], so the caller sees a miss and the next put heals it. A
//! body cut short or stalled is a temporary error (the object may be fine).

use larder_core::verify::{VerifyHooks, verified_stream};
use larder_core::{BlobRead, Digest, Error, Result};

use crate::backend::GcsStore;
use crate::error::{sdk, stalled};

pub(crate) async fn get_blob(store: &GcsStore, digest: &Digest) -> Result<Option<BlobRead>> {
    let key = store.blob_key(digest);
    let what = format!("reading blob {digest}");
    let clients = store.clients().await?;
    let read_timeout = store.cfg().read_timeout;
    let opened = tokio::time::timeout(
        read_timeout,
        clients
            .storage
            .read_object(store.bucket_path(), &key)
            .send(),
    )
    .await;
    let body = match opened {
        Err(_) => return Err(stalled(&what, read_timeout)),
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.http_status_code() == Some(404) => return Ok(None),
        Ok(Err(e)) => return Err(sdk(&what, e)),
    };
    // The service states the size in a response header; a server that leaves it out (the
    // emulator) reads as 0, so ask the metadata then.
    let mut size = body.object().size.max(0) as u64;
    if size == 0 {
        match store.head(&key).await? {
            Some(o) => size = o.size,
            None => return Ok(None),
        }
    }
    // The body's chunks, each bounded by the read time-out (a stalled body is temporary).
    let chunks = futures::stream::unfold(body, move |mut b| {
        let what = what.clone();
        async move {
            match tokio::time::timeout(read_timeout, b.next()).await {
                Err(_) => Some((Err(stalled(&what, read_timeout)), b)),
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), b)),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    // Checksum mismatches (crc32c/md5) are the service's bytes being wrong.
                    let mut err = sdk(&what, e);
                    if let Error::Store { temporary, .. } = &mut err {
                        *temporary = true;
                    }
                    Some((Err(err), b))
                }
            }
        }
    });
    let (store2, digest2) = (store.clone(), *digest);
    let hooks = VerifyHooks {
        on_corrupt: Box::new(move || {
            Box::pin(async move {
                let key = store2.blob_key(&digest2);
                if let Err(e) = store2.delete_object(&key, None).await {
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

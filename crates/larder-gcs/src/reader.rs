//! Downloads: one streamed read per blob through the official client, verified against its
//! BLAKE3 digest as it goes.
//!
//! A blob whose bytes do not match (wrong length or digest) is deleted from the bucket and the
//! stream ends with [`Error::Corrupt`], so the caller sees a miss and the next put heals it. A
//! body cut short or stalled is a temporary error (the object may be fine).

use google_cloud_storage::read_object::ReadObjectResponse;
use larder_core::digest::DigestWriter;
use larder_core::{BlobRead, Digest, Error, Result};

use crate::backend::GcsStore;
use crate::error::{sdk, stalled};

struct Verify {
    body: ReadObjectResponse,
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
    done: bool,
    store: GcsStore,
}

impl Verify {
    /// The blob failed verification: remove it, and report it corrupt.
    async fn corrupt(&mut self, reason: String) -> Error {
        self.done = true;
        let key = self.store.blob_key(&self.digest);
        if let Err(e) = self.store.delete_object(&key, None).await {
            tracing::warn!(
                "{}: cannot remove corrupt blob {}: {e}",
                self.store,
                self.digest
            );
        }
        Error::corrupt(format!("blob {}", self.digest), reason)
    }
}

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
    let state = Verify {
        body,
        hasher: DigestWriter::new(),
        digest: *digest,
        size,
        done: false,
        store: store.clone(),
    };
    let stream = futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        let what = format!("reading blob {}", st.digest);
        let next = match tokio::time::timeout(read_timeout, st.body.next()).await {
            Ok(next) => next,
            Err(_) => {
                st.done = true;
                return Some((Err(stalled(&what, read_timeout)), st));
            }
        };
        match next {
            Some(Ok(chunk)) => {
                st.hasher.update(&chunk);
                if st.hasher.len() > st.size {
                    let e = st.corrupt("longer than its size".into()).await;
                    return Some((Err(e), st));
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => {
                st.done = true;
                // Checksum mismatches (crc32c/md5) are the service's bytes being wrong.
                let mut err = sdk(&what, e);
                if let Error::Store { temporary, .. } = &mut err {
                    *temporary = true;
                }
                Some((Err(err), st))
            }
            None => {
                if st.hasher.len() != st.size {
                    let reason = format!("{} bytes, expected {}", st.hasher.len(), st.size);
                    let e = st.corrupt(reason).await;
                    Some((Err(e), st))
                } else if st.hasher.finish() != st.digest {
                    let e = st.corrupt("bytes do not match the digest".into()).await;
                    Some((Err(e), st))
                } else {
                    None
                }
            }
        }
    });
    Ok(Some(BlobRead {
        size,
        stream: Box::pin(stream),
    }))
}

//! Downloads: one streamed `GetObject` per blob, verified against its BLAKE3 digest as it goes.
//!
//! A blob whose bytes do not match (wrong length or digest) is deleted from the bucket and the
//! stream ends with [`Error::Corrupt`], so the caller sees a miss and the next put heals it. A
//! body cut short or stalled is a temporary error (the object may be fine).

use larder_core::digest::DigestWriter;
use larder_core::{BlobRead, Digest, Error, Result};

use crate::backend::S3Store;
use crate::error::{body, stalled};

struct Verify {
    body: aws_sdk_s3::primitives::ByteStream,
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
    done: bool,
    store: S3Store,
}

impl Verify {
    /// The blob failed verification: remove it, and report it corrupt.
    async fn corrupt(&mut self, reason: String) -> Error {
        self.done = true;
        let key = self.store.blob_key(&self.digest);
        if let Err(e) = self.store.delete_object(&key).await {
            tracing::warn!(
                "{}: cannot remove corrupt blob {}: {e}",
                self.store,
                self.digest
            );
        }
        Error::corrupt(format!("blob {}", self.digest), reason)
    }
}

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
    let state = Verify {
        body: out.body,
        hasher: DigestWriter::new(),
        digest: *digest,
        size,
        done: false,
        store: store.clone(),
    };
    let read_timeout = store.cfg().read_timeout;
    let stream = futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        let what = format!("reading blob {}", st.digest);
        let next = match tokio::time::timeout(read_timeout, st.body.try_next()).await {
            Ok(next) => next,
            Err(_) => {
                st.done = true;
                return Some((Err(stalled(&what, read_timeout)), st));
            }
        };
        match next {
            Ok(Some(chunk)) => {
                st.hasher.update(&chunk);
                if st.hasher.len() > st.size {
                    let e = st.corrupt("longer than its size".into()).await;
                    return Some((Err(e), st));
                }
                Some((Ok(chunk), st))
            }
            Err(e) => {
                st.done = true;
                Some((Err(body(&what, e)), st))
            }
            Ok(None) => {
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

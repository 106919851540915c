//! Uploads. A blob up to the single-shot size (8 MiB) is gathered, verified, and written in
//! one request by the official client. A larger one is streamed through a JSON API multipart
//! upload whose body is the caller's stream itself, hashed as it passes: memory stays at one
//! chunk whatever the blob's size.
//!
//! Nothing unverified becomes visible: the last chunk of a large blob is only sent once the
//! whole stream has hashed to the digest; otherwise the body fails, the request is cut short,
//! and the service stores nothing. The caller's stream cannot be replayed, so a large upload
//! that fails is not retried here (the error says whether it was temporary).

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use larder_core::entry::now_ms;
use larder_core::{ByteStream, Digest, Error, PutOutcome, Result};
use reqwest_gcs::Method;

use crate::backend::GcsStore;
use crate::core::send;

/// Whether the blob at `key` is there to be reused by an entry about to be written.
/// Content-addressed: if it is there, it is these bytes (reads verify anyway). A blob old enough
/// that a trim could be about to collect it is refreshed first, so it outlives the entry (see
/// larder-bucket's trim); one that cannot be refreshed counts as absent, and is uploaded again.
pub(crate) async fn reusable(store: &GcsStore, key: &str) -> Result<bool> {
    let Some(o) = store.head(key).await? else {
        return Ok(false);
    };
    let half_grace = store.cfg().trim_grace.as_millis() as u64 / 2;
    Ok(o.updated_ms.saturating_add(half_grace) >= now_ms() || store.refresh(key).await)
}

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
    store: &GcsStore,
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<PutOutcome> {
    let key = store.blob_key(digest);
    if reusable(store, &key).await? {
        return Ok(PutOutcome::Exists);
    }
    if size <= store.cfg().single_shot_max as u64 {
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
        // Not create-only: a concurrent writer of the same blob writes the same bytes.
        return store.put_small(&key, buf.freeze(), false, &[]).await;
    }
    streamed(store, &key, digest, size, payload).await
}

struct Hashing {
    payload: ByteStream,
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
    done: bool,
    /// Why the body failed, for the caller (the HTTP client only reports "body error").
    failed: Arc<Mutex<Option<Error>>>,
}

impl Hashing {
    fn fail(&mut self, e: Error) -> std::io::Error {
        self.done = true;
        let io = std::io::Error::other(e.to_string());
        if let Ok(mut slot) = self.failed.lock() {
            *slot = Some(e);
        }
        io
    }
}

async fn streamed(
    store: &GcsStore,
    key: &str,
    digest: &Digest,
    size: u64,
    payload: ByteStream,
) -> Result<PutOutcome> {
    let failed = Arc::new(Mutex::new(None));
    let state = Hashing {
        payload,
        hasher: DigestWriter::new(),
        digest: *digest,
        size,
        done: false,
        failed: failed.clone(),
    };
    let data = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.payload.next().await {
            Some(Ok(chunk)) => {
                st.hasher.update(&chunk);
                let len = st.hasher.len();
                if len > st.size {
                    let e = mismatch(&st.digest, len, st.size);
                    return Some((Err(st.fail(e)), st));
                }
                // The last byte goes out only if the whole blob verified.
                if len == st.size && st.hasher.finish() != st.digest {
                    let e = mismatch(&st.digest, len, st.size);
                    return Some((Err(st.fail(e)), st));
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => Some((Err(st.fail(e)), st)),
            None => {
                st.done = true;
                if st.hasher.len() != st.size {
                    let e = mismatch(&st.digest, st.hasher.len(), st.size);
                    return Some((Err(st.fail(e)), st));
                }
                None
            }
        }
    });
    let resource = serde_json::json!({
        "name": key,
        "contentType": "application/octet-stream",
    });
    let (body, content_type, len) = crate::core::multipart(&resource, size, data.boxed());
    let what = format!("uploading blob {digest}");
    let clients = store.clients().await?;
    let path = format!("/upload/storage/v1/b/{}/o", store.cfg().bucket);
    let sent = async {
        let req = clients
            .request(store.cfg(), Method::POST, &path)
            .await?
            .query(&[("uploadType", "multipart")])
            .header("content-type", content_type)
            .header("content-length", len)
            .body(body);
        send(req).await
    }
    .await;
    let caller_fault = failed.lock().ok().and_then(|mut s| s.take());
    match (sent, caller_fault) {
        (_, Some(e)) => Err(e),
        (Ok(_), None) => Ok(PutOutcome::Written),
        (Err(e), None) => Err(e.into_error(&what)),
    }
}

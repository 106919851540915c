//! Uploads: a blob up to one part size goes up in one `PutObject`; larger blobs go up as a
//! multipart upload of fixed-size parts, a few in flight, so memory stays near
//! `part_size * (parts_in_flight + 1)` whatever the blob's size.
//!
//! The bytes are hashed as they pass. Nothing becomes visible until they are known good: a
//! single PUT is sent only after the whole (small) body has verified, and a multipart upload is
//! completed only after the last part has; otherwise it is aborted and the caller gets
//! [`Error::InvalidInput`]. Parts are whole buffers, so the SDK can retry a part that failed
//! temporarily; the caller's stream itself is never replayed.

use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use larder_core::entry::now_ms;
use larder_core::{ByteStream, Digest, Error, PutOutcome, Result};
use tokio::task::JoinSet;

use crate::backend::S3Store;
use crate::error::sdk;

/// Give an existing object a new modification time (a copy onto itself); `false` if the
/// service refused (then the caller uploads it again).
async fn refresh(store: &S3Store, key: &str) -> bool {
    let Ok(client) = store.client().await else {
        return false;
    };
    let copied = client
        .copy_object()
        .bucket(store.bucket())
        .key(key)
        .copy_source(format!("{}/{key}", store.bucket()))
        .metadata_directive(MetadataDirective::Replace)
        .send()
        .await;
    match copied {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("{store}: cannot refresh {key}: {}", sdk("refreshing", e));
            false
        }
    }
}

/// Whether the blob at `key` is there to be reused by an entry about to be written.
/// Content-addressed: if it is there, it is these bytes (reads verify anyway). A blob old enough
/// that a trim could be about to collect it is refreshed first, so it outlives the entry (see
/// larder-bucket's trim); one that cannot be refreshed counts as absent, and is uploaded again.
pub(crate) async fn reusable(store: &S3Store, key: &str) -> Result<bool> {
    let Some(head) = store.head(key).await? else {
        return Ok(false);
    };
    let modified = head
        .last_modified()
        .and_then(|t| t.to_millis().ok())
        .unwrap_or(0)
        .max(0) as u64;
    let half_grace = store.cfg().trim_grace.as_millis() as u64 / 2;
    Ok(modified.saturating_add(half_grace) >= now_ms() || refresh(store, key).await)
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
    store: &S3Store,
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<PutOutcome> {
    let key = store.blob_key(digest);
    if reusable(store, &key).await? {
        return Ok(PutOutcome::Exists);
    }
    let part_size = store.cfg().part_size;
    if size <= part_size as u64 {
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
    multipart(store, &key, digest, size, payload).await
}

async fn multipart(
    store: &S3Store,
    key: &str,
    digest: &Digest,
    size: u64,
    payload: ByteStream,
) -> Result<PutOutcome> {
    let client = store.client().await?;
    let created = client
        .create_multipart_upload()
        .bucket(store.bucket())
        .key(key)
        .send()
        .await
        .map_err(|e| sdk(&format!("starting the upload of blob {digest}"), e))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| Error::Store {
            store: crate::error::STORE.into(),
            message: format!("starting the upload of blob {digest}: no upload id in the answer"),
            temporary: false,
            source: None,
        })?
        .to_owned();
    let result = upload_parts(store, key, &upload_id, digest, size, payload).await;
    match result {
        Ok(parts) => {
            let done = client
                .complete_multipart_upload()
                .bucket(store.bucket())
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await;
            match done {
                Ok(_) => Ok(PutOutcome::Written),
                Err(e) => {
                    let err = sdk(&format!("completing the upload of blob {digest}"), e);
                    abort(store, key, &upload_id).await;
                    Err(err)
                }
            }
        }
        Err(e) => {
            abort(store, key, &upload_id).await;
            Err(e)
        }
    }
}

/// Abort an upload so the service drops its parts (best effort: a failure is only logged, and
/// bucket lifecycle rules for incomplete uploads are the backstop).
async fn abort(store: &S3Store, key: &str, upload_id: &str) {
    let Ok(client) = store.client().await else {
        return;
    };
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(store.bucket())
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        tracing::warn!(
            "{store}: cannot abort the multipart upload of {key}: {}",
            sdk("aborting", e)
        );
    }
}

async fn upload_parts(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    digest: &Digest,
    size: u64,
    mut payload: ByteStream,
) -> Result<Vec<CompletedPart>> {
    let client = store.client().await?.clone();
    let part_size = store.cfg().part_size;
    let in_flight = store.cfg().parts_in_flight;
    let mut hasher = DigestWriter::new();
    let mut buf = BytesMut::with_capacity(part_size);
    let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
    let mut parts = Vec::new();
    let mut number = 0i32;

    let mut send = |part: Bytes, tasks: &mut JoinSet<Result<CompletedPart>>| {
        number += 1;
        let n = number;
        let req = client
            .upload_part()
            .bucket(store.bucket())
            .key(key)
            .upload_id(upload_id)
            .part_number(n)
            .content_length(part.len() as i64)
            .body(S3Body::from(part));
        let what = format!("uploading part {n} of blob {digest}");
        tasks.spawn(async move {
            let out = req.send().await.map_err(|e| sdk(&what, e))?;
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build())
        });
    };

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
                // Bound memory: wait for a slot before buffering more.
                while tasks.len() >= in_flight {
                    parts.push(joined(tasks.join_next().await)?);
                }
                let part = std::mem::replace(&mut buf, BytesMut::with_capacity(part_size));
                send(part.freeze(), &mut tasks);
            }
        }
    }
    if hasher.len() != size || hasher.finish() != *digest {
        return Err(mismatch(digest, hasher.len(), size));
    }
    if !buf.is_empty() {
        send(buf.freeze(), &mut tasks);
    }
    while let Some(r) = tasks.join_next().await {
        parts.push(joined(Some(r))?);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok(parts)
}

fn joined(
    r: Option<std::result::Result<Result<CompletedPart>, tokio::task::JoinError>>,
) -> Result<CompletedPart> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(Error::Store {
            store: crate::error::STORE.into(),
            message: format!("a part upload task failed: {e}"),
            temporary: false,
            source: None,
        }),
        None => Err(Error::Store {
            store: crate::error::STORE.into(),
            message: "no part upload to wait for".into(),
            temporary: false,
            source: None,
        }),
    }
}

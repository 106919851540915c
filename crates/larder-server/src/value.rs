//! Opaque values (ccache results, Bazel action results and CAS objects) stored as larder
//! entries.
//!
//! A value under a key is an entry with one file output named [`VALUE_OUTPUT`]: inline in the
//! entry when at most [`DEFAULT_INLINE_LIMIT`] bytes, else a blob the entry refers to. A read
//! returns exactly the bytes written, streamed from the blob.

use axum::body::Body;
use larder_core::entry::DEFAULT_INLINE_LIMIT;
use larder_core::{Content, Entry, GetOptions, Key, Output, OutputKind, PutOptions, Store};

use crate::body::Spooled;
use crate::error::ApiResult;

/// The output path of a value inside its entry (shared with REAPI over gRPC).
pub(crate) use larder_reapi::layout::VALUE_OUTPUT;

/// Store `data` under `key` (overwriting), blob first.
pub(crate) async fn put_value(
    store: &dyn Store,
    key: &Key,
    data: Spooled,
    producer: &str,
) -> ApiResult<()> {
    let content = match data.small_bytes(DEFAULT_INLINE_LIMIT) {
        Some(bytes) => Content::inline(bytes.to_vec()),
        None => {
            let (digest, size) = (data.digest, data.size);
            data.store_as(store, &digest).await?;
            Content::blob(digest, size)
        }
    };
    let mut entry = Entry::new(key.as_str(), producer);
    entry.outputs.push(Output {
        path: VALUE_OUTPUT.into(),
        kind: OutputKind::File {
            content,
            executable: false,
        },
    });
    store
        .put_entry_opts(key, &entry, PutOptions::default())
        .await?;
    Ok(())
}

/// The content of the value under `key`, if there is one.
pub(crate) async fn value_content(
    store: &dyn Store,
    key: &Key,
    record_access: bool,
) -> ApiResult<Option<Content>> {
    let mut opts = GetOptions::default();
    opts.record_access = record_access;
    let Some(entry) = store.get_entry_opts(key, opts).await? else {
        return Ok(None);
    };
    Ok(entry.outputs.into_iter().find_map(|o| match o.kind {
        OutputKind::File { content, .. } if o.path == VALUE_OUTPUT => Some(content),
        _ => None,
    }))
}

/// The value under `key` as a response body with its length, if it exists (its blob included).
pub(crate) async fn get_value(store: &dyn Store, key: &Key) -> ApiResult<Option<(u64, Body)>> {
    let Some(content) = value_content(store, key, true).await? else {
        return Ok(None);
    };
    if let Some(bytes) = content.inline {
        return Ok(Some((content.size, Body::from(bytes.into_vec()))));
    }
    let Some(read) = store.get_blob(&content.digest).await? else {
        tracing::warn!(
            "larder-server: {key}: its blob {} is missing",
            content.digest
        );
        return Ok(None);
    };
    Ok(Some((read.size, Body::from_stream(read.stream))))
}

/// The length of the value under `key`, if it exists (its blob included).
pub(crate) async fn head_value(store: &dyn Store, key: &Key) -> ApiResult<Option<u64>> {
    let Some(content) = value_content(store, key, false).await? else {
        return Ok(None);
    };
    if let Some(d) = content.blob_digest()
        && !store.find_missing(&[d]).await?.is_empty()
    {
        return Ok(None);
    }
    Ok(Some(content.size))
}

//! Larder's own protocol, spoken by `larder-http` (see `docs/protocol.md`).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use larder_core::entry::MAX_ENTRY_BYTES;
use larder_core::{ByteStream, Digest, Entry, GetOptions, Key, PutMode, PutOptions, PutOutcome};

use crate::app::{AppState, below, sized_response};
use crate::body::{check_size, content_length, header_u64, limited, with_body};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Limit;
use futures::StreamExt;

/// The header carrying a blob's size.
pub const SIZE_HEADER: &str = "x-larder-size";

/// The most digests one find-missing request may name.
pub const MAX_FIND_MISSING: usize = 100_000;

/// The protocol's routes below `prefix`.
pub(crate) fn router(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &below(prefix, "/entries/{*key}"),
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        .route(
            &below(prefix, "/blobs/{digest}"),
            get(get_blob).head(head_blob).put(put_blob),
        )
        .route(&below(prefix, "/find-missing"), post(find_missing))
        .route(&below(prefix, "/stats"), get(stats))
        .route(&below(prefix, "/flush"), post(flush))
}

fn key(raw: String) -> ApiResult<Key> {
    Ok(Key::new(raw)?)
}

fn digest(raw: &str) -> ApiResult<Digest> {
    Ok(Digest::from_hex(raw)?)
}

fn query_flag(query: &Option<String>, name: &str) -> Option<String> {
    query.as_deref().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_owned())
        })
    })
}

fn outcome(o: PutOutcome) -> Response {
    match o {
        PutOutcome::Written => StatusCode::CREATED.into_response(),
        PutOutcome::Exists => StatusCode::OK.into_response(),
    }
}

async fn get_entry(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let key = key(raw)?;
    let mut opts = GetOptions::default();
    if let Some(v) = query_flag(&query, "record_access") {
        opts.record_access = !matches!(v.as_str(), "0" | "false");
    }
    let Some(entry) = st.store.get_entry_opts(&key, opts).await? else {
        return Err(ApiError::NotFound);
    };
    // Encoding costs memory and CPU in proportion to the outputs: a bounded number at once, on
    // a blocking thread (the store decodes large entries on its own blocking threads). The
    // turn is taken after the lookup, so a slow store (an upstream fetch) holds no turn.
    let bytes = if entry.outputs.len() <= INLINE_CODEC_OUTPUTS {
        entry.encode()?
    } else {
        let _turn = entry_turn(&st).await?;
        tokio::task::spawn_blocking(move || entry.encode())
            .await
            .map_err(|e| {
                ApiError::Store(larder_core::Error::invalid(format!("encoding task: {e}")))
            })??
    };
    Ok(sized_response(
        StatusCode::OK,
        bytes.len() as u64,
        Body::from(bytes),
    ))
}

/// Entries up to this many outputs are encoded on the async thread: microseconds, less than a
/// hand-over to a blocking thread.
const INLINE_CODEC_OUTPUTS: usize = 256;
/// Entries up to this many bytes are decoded on the async thread, for the same reason.
const INLINE_CODEC_BYTES: usize = 64 << 10;

/// Wait for a turn to decode or encode an entry.
async fn entry_turn(st: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    std::sync::Arc::clone(&st.entry_slots)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Store(larder_core::Error::invalid("the server is stopping")))
}

/// An entry over `--max-entry-size` or `--max-entry-outputs`: counted, and answered 413.
fn entry_too_large(st: &AppState, what: String, limit: u64) -> ApiError {
    st.metrics.tripped(Limit::Entry);
    ApiError::TooLarge { what, limit }
}

async fn put_entry(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    with_body(body, |body| put_entry_from(st, raw, query, headers, body)).await
}

async fn put_entry_from(
    st: AppState,
    raw: String,
    query: Option<String>,
    headers: HeaderMap,
    body: ByteStream,
) -> ApiResult<Response> {
    st.admit_write(content_length(&headers)?).await?;
    let key = key(raw)?;
    let limits = &st.config.limits;
    let max_bytes = limits.max_entry_bytes.min(MAX_ENTRY_BYTES as u64);
    if let Some(declared) = content_length(&headers)?
        && declared > max_bytes
    {
        return Err(entry_too_large(
            &st,
            format!("entry of {declared} bytes"),
            max_bytes,
        ));
    }
    let mut stream = limited(body, Some(max_bytes));
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(larder_core::Error::TooLarge { size, .. }) => {
                return Err(entry_too_large(
                    &st,
                    format!("entry of at least {size} bytes"),
                    max_bytes,
                ));
            }
            Err(e) => return Err(ApiError::Body(e.to_string())),
        }
    }
    let bytes = bytes.freeze();
    // Decoding costs several times the entry's size and milliseconds per megabyte: a bounded
    // number at once, on a blocking thread, so that the async threads go on serving.
    let decoded = if bytes.len() <= INLINE_CODEC_BYTES {
        Entry::decode(&bytes)
    } else {
        let _turn = entry_turn(&st).await?;
        tokio::task::spawn_blocking(move || Entry::decode(&bytes))
            .await
            .map_err(|e| {
                ApiError::Store(larder_core::Error::invalid(format!("decoding task: {e}")))
            })?
    };
    let entry = decoded.map_err(|e| ApiError::bad(format!("undecodable entry: {e}")))?;
    if entry.outputs.len() > limits.max_entry_outputs {
        return Err(entry_too_large(
            &st,
            format!("entry of {} outputs", entry.outputs.len()),
            limits.max_entry_outputs as u64,
        ));
    }
    let mut opts = PutOptions::default();
    if query_flag(&query, "mode").as_deref() == Some("create") {
        opts.mode = PutMode::Create;
    }
    Ok(outcome(st.store.put_entry_opts(&key, &entry, opts).await?))
}

async fn delete_entry(State(st): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    st.check_writable()?;
    let key = key(raw)?;
    if st.store.delete(&key).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}

async fn get_blob(State(st): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    let d = digest(&raw)?;
    let Some(read) = st.store.get_blob(&d).await? else {
        return Err(ApiError::NotFound);
    };
    let size = read.size;
    let mut resp = sized_response(StatusCode::OK, size, Body::from_stream(read.stream));
    resp.headers_mut()
        .insert(SIZE_HEADER, HeaderValue::from(size));
    Ok(resp)
}

async fn head_blob(State(st): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    let d = digest(&raw)?;
    if st.store.find_missing(&[d]).await?.is_empty() {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}

async fn put_blob(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    with_body(body, |body| put_blob_from(st, raw, headers, body)).await
}

async fn put_blob_from(
    st: AppState,
    raw: String,
    headers: HeaderMap,
    body: ByteStream,
) -> ApiResult<Response> {
    st.check_writable()?;
    let d = digest(&raw)?;
    let size = match header_u64(&headers, SIZE_HEADER)? {
        Some(s) => s,
        None => match content_length(&headers)? {
            Some(s) => s,
            // HTTP/1.1: no length and no transfer coding means an empty body.
            None if !headers.contains_key("transfer-encoding") => 0,
            None => {
                return Err(ApiError::bad(format!(
                    "a chunked blob upload needs {SIZE_HEADER}"
                )));
            }
        },
    };
    let limit = st.config.max_blob_bytes;
    check_size("blob", Some(size), limit)?;
    check_size("blob", content_length(&headers)?, limit)?;
    st.admit_write(Some(size)).await?;
    // Read at most one byte past the declared size: enough for the store to see the mismatch.
    let bound = Some(limit.map_or(size + 1, |l| l.min(size + 1)));
    let outcome_ = st.store.put_blob(&d, size, limited(body, bound)).await?;
    Ok(outcome(outcome_))
}

async fn find_missing(State(st): State<AppState>, body: Body) -> ApiResult<Response> {
    let bytes = axum::body::to_bytes(body, MAX_FIND_MISSING * 70 + 64)
        .await
        .map_err(|e| ApiError::Body(e.to_string()))?;
    let hexes: Vec<String> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("expected a JSON list of hex digests: {e}")))?;
    if hexes.len() > MAX_FIND_MISSING {
        return Err(ApiError::bad(format!(
            "at most {MAX_FIND_MISSING} digests per request"
        )));
    }
    let digests = hexes
        .iter()
        .map(|h| digest(h))
        .collect::<ApiResult<Vec<_>>>()?;
    let missing: Vec<String> = st
        .store
        .find_missing(&digests)
        .await?
        .iter()
        .map(Digest::to_hex)
        .collect();
    Ok(axum::Json(missing).into_response())
}

async fn stats(State(st): State<AppState>) -> ApiResult<Response> {
    Ok(axum::Json(st.store.stats().await?).into_response())
}

async fn flush(State(st): State<AppState>) -> ApiResult<Response> {
    st.store.flush().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

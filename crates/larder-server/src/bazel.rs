//! Bazel's HTTP cache protocol (`--remote_cache=http://HOST:PORT/<prefix>`).
//!
//! - `GET|HEAD|PUT <sub>/ac/<sha256>`: action results, opaque to the server, stored under the
//!   larder key `bazel-ac/<sub>/<sha256>` (the sub-path is Bazel's instance name, if any).
//! - `GET|HEAD|PUT <sub>/cas/<sha256>`: content-addressed objects. An upload must hash to its
//!   key (checked while it streams in; else 400). Where the store holds SHA-256 blobs
//!   ([`Capability::sha256`](larder_core::Capability::sha256)) the object is a standalone blob
//!   under its SHA-256 digest, with no entry; otherwise a larder blob (or inline when small)
//!   named by an entry under `bazel-cas/<sha256>`, the index from SHA-256 to larder's BLAKE3.
//!   Reads try the blob, then the entry, so objects stored before either way are found (the
//!   [layout](larder_reapi::layout) REAPI over gRPC shares). Instances share the CAS, as its
//!   names cannot collide.
//! - The empty blob always exists.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_core::{BlobRead, ByteStream, Key};
use larder_reapi::{DigestFn, layout};

use crate::app::{AppState, sized_response};
use crate::body::with_body;
use crate::error::{ApiError, ApiResult};
use crate::value::{get_value, head_value, put_value};

/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The protocol's routes below `prefix`.
pub(crate) fn router(prefix: &str) -> Router<AppState> {
    Router::new().route(
        &crate::app::below(prefix, "/{*path}"),
        get(get_h).head(head_h).put(put_h),
    )
}

/// Which store a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ac,
    Cas,
}

/// Parse `<sub>/(ac|cas)/<sha256>` into what it names and its larder key.
fn parse(path: &str) -> ApiResult<(Kind, String, Key)> {
    let bad = || ApiError::bad(format!("{path:?} is not <instance>/(ac|cas)/<sha256>"));
    let (rest, hash) = path.rsplit_once('/').ok_or_else(bad)?;
    let (sub, kind) = match rest.rsplit_once('/') {
        Some((sub, kind)) => (Some(sub), kind),
        None => (None, rest),
    };
    let kind = match kind {
        "ac" => Kind::Ac,
        "cas" => Kind::Cas,
        _ => return Err(bad()),
    };
    if hash.len() != 64
        || !hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(bad());
    }
    // The keys REAPI over gRPC uses too: one CAS and one action cache for both protocols.
    let key = match kind {
        Kind::Cas => layout::cas_key(DigestFn::Sha256, hash)?,
        Kind::Ac => layout::ac_key(DigestFn::Sha256, sub.unwrap_or_default(), hash)?,
    };
    Ok((kind, hash.to_owned(), key))
}

/// The larder key a request path below the Bazel prefix names, if it names one.
pub(crate) fn key_for_path(path: &str) -> Option<Key> {
    parse(path).ok().map(|(_, _, key)| key)
}

async fn get_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let (kind, hash, key) = parse(&path)?;
    if kind == Kind::Cas && hash == EMPTY_SHA256 {
        return Ok(sized_response(StatusCode::OK, 0, Body::empty()));
    }
    if kind == Kind::Cas
        && let Some(read) = standalone_read(&st, &hash).await?
    {
        return Ok(sized_response(
            StatusCode::OK,
            read.size,
            Body::from_stream(read.stream),
        ));
    }
    match get_value(&*st.store, &key).await? {
        Some((size, body)) => Ok(sized_response(StatusCode::OK, size, body)),
        None => Err(ApiError::NotFound),
    }
}

/// The standalone blob of CAS object `hash`, if the store keeps such blobs and has this one.
async fn standalone_read(st: &AppState, hash: &str) -> ApiResult<Option<BlobRead>> {
    let cap = st.store.capability();
    match layout::standalone_digest(cap, DigestFn::Sha256, hash) {
        Some(d) => Ok(st.store.get_blob(&d).await?),
        None => Ok(None),
    }
}

async fn head_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let (kind, hash, key) = parse(&path)?;
    if kind == Kind::Cas && hash == EMPTY_SHA256 {
        return Ok(sized_response(StatusCode::OK, 0, Body::empty()));
    }
    if kind == Kind::Cas
        && let Some(read) = standalone_read(&st, &hash).await?
    {
        // The stream is dropped unread: the size is what a HEAD wants.
        return Ok(sized_response(StatusCode::OK, read.size, Body::empty()));
    }
    match head_value(&*st.store, &key).await? {
        Some(size) => Ok(sized_response(StatusCode::OK, size, Body::empty())),
        None => Err(ApiError::NotFound),
    }
}

async fn put_h(
    State(st): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    with_body(body, |body| put_from(st, path, headers, body)).await
}

async fn put_from(
    st: AppState,
    path: String,
    headers: HeaderMap,
    body: ByteStream,
) -> ApiResult<Response> {
    st.check_writable()?;
    let (kind, hash, key) = parse(&path)?;
    let data = st
        .receive_value("upload", &headers, body, kind == Kind::Cas)
        .await?;
    if let Some(sha) = data.sha256 {
        let got: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        if got != hash {
            return Err(ApiError::bad(format!(
                "the body's SHA-256 is {got}, not {hash}"
            )));
        }
        if hash == EMPTY_SHA256 {
            return Ok(StatusCode::OK.into_response());
        }
    }
    if kind == Kind::Cas
        && let Some(d) = layout::standalone_digest(st.store.capability(), DigestFn::Sha256, &hash)
    {
        data.store_as(&*st.store, &d).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let producer = match kind {
        Kind::Ac => "bazel-ac",
        Kind::Cas => "bazel-cas",
    };
    put_value(&*st.store, &key, data, producer).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_with_and_without_instance() {
        let h = "a".repeat(64);
        let (k, _, key) = parse(&format!("cas/{h}")).unwrap();
        assert_eq!((k, key.as_str()), (Kind::Cas, &*format!("bazel-cas/{h}")));
        let (_, _, key2) = parse(&format!("inst/x/cas/{h}")).unwrap();
        assert_eq!(key, key2);
        let (k, _, key) = parse(&format!("inst/ac/{h}")).unwrap();
        assert_eq!(
            (k, key.as_str()),
            (Kind::Ac, &*format!("bazel-ac/inst/{h}"))
        );
        for bad in [
            format!("xx/{h}"),
            format!("ac/{}", "A".repeat(64)),
            "ac/123".into(),
            h.clone(),
            format!("../ac/{h}"),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}

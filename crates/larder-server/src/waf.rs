//! waf's wafcache "netcache" protocol (`WAFCACHE=http://HOST:PORT/waf/`).
//!
//! wafcache stores output `i` of the task with signature `sig` by `POST`ing a
//! `multipart/form-data` body with one field `file` (file name `sig/i`) to `PREFIX/sig/i`, and
//! fetches it with `GET PREFIX/sig/i`; any status of 400 or more is a miss. Because wafcache
//! joins its base URL and the path with `/`, a base ending in `/` gives `PREFIX//sig/i`: empty
//! path segments are dropped. Each file is a value (see [`crate::value`]) under the key
//! `waf/<sig>/<i>`.
//!
//! The form is checked as it streams in (see [`crate::multipart`]): bytes before the first
//! boundary, a part's header block and the number of parts are bounded (413 past them).

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_core::Key;

use crate::app::{AppState, below, sized_response};
use crate::body::{Spooler, check_size};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Limit;
use crate::multipart;
use crate::value::{get_value, head_value, put_value};

/// The protocol's routes below `prefix`.
pub(crate) fn router(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &below(prefix, "/{*path}"),
            get(get_h).head(head_h).post(post_h),
        )
        // Bodies stream to disk; the bound is `max_blob_bytes`, checked as they arrive.
        .layer(DefaultBodyLimit::disable())
}

/// The larder key for a netcache path.
pub(crate) fn key(path: &str) -> ApiResult<Key> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return Err(ApiError::bad(format!(
            "{path:?} is not a wafcache path (SIG/INDEX)"
        )));
    }
    Key::new(format!("waf/{}", segments.join("/")))
        .map_err(|e| ApiError::bad(format!("bad wafcache path {path:?}: {e}")))
}

async fn get_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    match get_value(&*st.store, &key(&path)?).await? {
        Some((size, body)) => Ok(sized_response(StatusCode::OK, size, body)),
        None => Err(ApiError::NotFound),
    }
}

async fn head_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    match head_value(&*st.store, &key(&path)?).await? {
        Some(size) => Ok(sized_response(StatusCode::OK, size, Body::empty())),
        None => Err(ApiError::NotFound),
    }
}

async fn post_h(
    State(st): State<AppState>,
    Path(path): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    st.check_writable()?;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let key = key(&path)?;
    let limit = st.config.max_blob_bytes;
    st.admit_write(None).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = multipart::boundary(&content_type)
        .ok_or_else(|| ApiError::bad("expected a multipart/form-data body with a boundary"))?;
    let limits = &st.config.limits;
    let bounds = multipart::Bounds {
        preamble: limits.multipart_preamble_bytes,
        header: limits.multipart_header_bytes,
        parts: limits.multipart_parts,
    };
    let tripped = multipart::Tripped::default();
    let guarded = multipart::guard(body.into_data_stream(), &boundary, bounds, tripped.clone());
    // The request as it came (its extensions lift axum's default body limit), over the guard.
    let request = Request::from_parts(parts, Body::from_stream(guarded));
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::Body(e.to_string()))?;
    // A parser error after a bound tripped is that bound's 413.
    let failed = |e: axum::extract::multipart::MultipartError| match tripped.get() {
        Some(limit) => {
            st.metrics.tripped(limit);
            ApiError::TooLarge {
                what: format!("multipart body ({})", limit.label()),
                limit: match limit {
                    Limit::MultipartPreamble => bounds.preamble,
                    Limit::MultipartHeader => bounds.header,
                    _ => bounds.parts as u64,
                },
            }
        }
        None => ApiError::Body(e.to_string()),
    };
    while let Some(mut field) = form.next_field().await.map_err(failed)? {
        if field.name() != Some("file") {
            continue;
        }
        let mut spooler = Spooler::new(false, &st.tmp_dir, None);
        while let Some(chunk) = field.chunk().await.map_err(failed)? {
            spooler.push(&chunk).await?;
            check_size("file", Some(spooler.size()), limit)?;
        }
        let data = spooler.finish().await?;
        put_value(&*st.store, &key, data, "wafcache").await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    Err(ApiError::bad("the form has no `file` field"))
}

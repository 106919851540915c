//! ccache's HTTP remote storage (ccache 4.7 and later).
//!
//! ccache names each value by a 40-hex-digit key and lays it out in one of three ways below
//! the URL it is given (which may add its own sub-path below our prefix):
//! - `subdirs` (default): `<sub>/ab/<38 more digits>`;
//! - `flat`: `<sub>/<40 digits>`;
//! - `bazel`: `<sub>/ac/<40 digits + their first 24>` (64 digits, to look like a SHA-256).
//!
//! All three map to the larder key `ccache/<sub>/<40 digits>`, so a cache filled through one
//! layout serves the others. Values are stored as in [`crate::value`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_core::Key;

use crate::app::{AppState, sized_response};
use crate::body::{check_size, content_length, spool};
use crate::error::{ApiError, ApiResult};
use crate::value::{get_value, head_value, put_value};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(
        "/{*path}",
        get(get_h).head(head_h).put(put_h).delete(delete_h),
    )
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The larder key for a ccache path (any layout), or 400.
pub fn key_for_path(path: &str) -> Result<Key, String> {
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let last = segments[n - 1];
    let prev = (n >= 2).then(|| segments[n - 2]);
    let (key, sub) = if last.len() == 40 && is_hex(last) {
        (last.to_owned(), &segments[..n - 1])
    } else if last.len() == 38 && is_hex(last) && prev.is_some_and(|p| p.len() == 2 && is_hex(p)) {
        (format!("{}{last}", segments[n - 2]), &segments[..n - 2])
    } else if last.len() == 64 && is_hex(last) && prev == Some("ac") && last[40..] == last[..24] {
        (last[..40].to_owned(), &segments[..n - 2])
    } else {
        return Err(format!(
            "{path:?} is not a ccache key path (layouts subdirs, flat, bazel)"
        ));
    };
    let mut name = String::from("ccache/");
    for s in sub {
        name.push_str(s);
        name.push('/');
    }
    name.push_str(&key);
    Key::new(name).map_err(|e| e.to_string())
}

fn key(path: &str) -> ApiResult<Key> {
    key_for_path(path).map_err(ApiError::BadRequest)
}

async fn get_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let key = key(&path)?;
    match get_value(&*st.store, &key).await? {
        Some((size, body)) => Ok(sized_response(StatusCode::OK, size, body)),
        None => Err(ApiError::NotFound),
    }
}

async fn head_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let key = key(&path)?;
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
    st.check_writable()?;
    let key = key(&path)?;
    let limit = st.config.max_blob_bytes;
    check_size("value", content_length(&headers)?, limit)?;
    let data = spool(body, limit, false, &st.tmp_dir).await?;
    put_value(&*st.store, &key, data, "ccache").await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn delete_h(State(st): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    st.check_writable()?;
    let key = key(&path)?;
    if st.store.delete(&key).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_layouts_map_to_one_key() {
        let k = "0123456789abcdef0123456789abcdef01234567";
        let flat = key_for_path(k).unwrap();
        let subdirs = key_for_path(&format!("{}/{}", &k[..2], &k[2..])).unwrap();
        let bazel = key_for_path(&format!("ac/{k}{}", &k[..24])).unwrap();
        assert_eq!(flat, subdirs);
        assert_eq!(flat, bazel);
        assert_eq!(flat.as_str(), format!("ccache/{k}"));
        let team = key_for_path(&format!("team/{k}")).unwrap();
        assert_eq!(team.as_str(), format!("ccache/team/{k}"));
    }

    #[test]
    fn other_paths_are_refused() {
        let k = "0123456789abcdef0123456789abcdef01234567";
        for bad in [
            "x",
            "",
            &k.to_uppercase(),
            &format!("ac/{k}{}", "0".repeat(24)),
            &format!("../{k}"),
            &format!("a//{k}"),
        ] {
            assert!(key_for_path(bad).is_err(), "{bad:?}");
        }
    }
}

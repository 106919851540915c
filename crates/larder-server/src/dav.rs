//! A WebDAV tree, as sccache's WebDAV storage (through OpenDAL) uses it.
//!
//! sccache first reads `<root>/.sccache_check` (404 is fine), then writes objects at
//! `<root>/a/b/c/<key>`: it asks `PROPFIND` (`Depth: 0`) of each parent collection, `MKCOL`s
//! those that are missing, and `PUT`s the object; reads are plain `GET`s, a 404 being a miss.
//!
//! Collections here are virtual: every path ending in `/` is a collection that exists, and
//! `MKCOL` always succeeds, so the tree needs no bookkeeping beyond its objects. An object is a
//! value (see [`crate::value`]) under the key `dav/<its path>`; empty path segments are dropped.
//! `PROPFIND` answers a `207 Multi-Status` with one `<D:response>` for the path asked about,
//! whatever the depth (clients that list collections are not supported).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use larder_core::Key;

use crate::app::{AppState, sized_response};
use crate::body::with_body;
use crate::error::{ApiError, ApiResult};
use crate::value::{get_value, head_value, put_value};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", any(handle))
        .route("/{*path}", any(handle))
}

/// The object path (`a/b/c/key`) of a request path below the prefix, and whether the request
/// names a collection.
pub(crate) fn object_path(rest: &str) -> (String, bool) {
    let collection = rest.is_empty() || rest.ends_with('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    (segments.join("/"), collection)
}

pub(crate) fn key(path: &str) -> ApiResult<Key> {
    Key::new(format!("dav/{path}"))
        .map_err(|e| ApiError::bad(format!("bad WebDAV path {path:?}: {e}")))
}

/// `PREFIX/` itself (the tree's root collection), routed outside the nested router.
pub(crate) async fn root(State(st): State<AppState>, request: Request) -> ApiResult<Response> {
    handle_below(st, "/".to_owned(), request).await
}

async fn handle(State(st): State<AppState>, request: Request) -> ApiResult<Response> {
    // Nested routers see the path below their prefix.
    let below = request.uri().path().to_owned();
    handle_below(st, below, request).await
}

async fn handle_below(st: AppState, below: String, request: Request) -> ApiResult<Response> {
    let (path, collection) = object_path(&below);
    let href = format!("{}{below}", st.config.dav_prefix);
    let method = request.method().as_str().to_owned();
    match (method.as_str(), collection || path.is_empty()) {
        ("OPTIONS", _) => Ok(options()),
        ("PROPFIND", true) => Ok(multistatus(&href, None)),
        ("PROPFIND", false) => match head_value(&*st.store, &key(&path)?).await? {
            Some(size) => Ok(multistatus(&href, Some(size))),
            None => Err(ApiError::NotFound),
        },
        ("MKCOL", _) => {
            st.check_writable()?;
            Ok(StatusCode::CREATED.into_response())
        }
        ("GET", false) => match get_value(&*st.store, &key(&path)?).await? {
            Some((size, body)) => Ok(sized_response(StatusCode::OK, size, body)),
            None => Err(ApiError::NotFound),
        },
        ("HEAD", false) => match head_value(&*st.store, &key(&path)?).await? {
            Some(size) => Ok(sized_response(StatusCode::OK, size, Body::empty())),
            None => Err(ApiError::NotFound),
        },
        ("GET" | "HEAD", true) => Ok(StatusCode::OK.into_response()),
        ("PUT", false) => {
            let key = key(&path)?;
            let headers = request.headers().clone();
            let body = request.into_body();
            with_body(body, |body| async move {
                st.check_writable()?;
                let data = st.receive_value("object", &headers, body, false).await?;
                put_value(&*st.store, &key, data, "webdav").await?;
                Ok(StatusCode::CREATED.into_response())
            })
            .await
        }
        ("DELETE", false) => {
            st.check_writable()?;
            if st.store.delete(&key(&path)?).await? {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(ApiError::NotFound)
            }
        }
        // Deleting a (virtual) collection deletes nothing.
        ("DELETE", true) => {
            st.check_writable()?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Ok(method_not_allowed()),
    }
}

const ALLOWED: &str = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, MKCOL";

fn options() -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert("dav", HeaderValue::from_static("1"));
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
    resp
}

fn method_not_allowed() -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not supported on this WebDAV tree\n",
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
    resp
}

/// A `207 Multi-Status` for `href`: a collection when `size` is `None`, else a file.
fn multistatus(href: &str, size: Option<u64>) -> Response {
    let props = match size {
        None => "<D:resourcetype><D:collection/></D:resourcetype>".to_owned(),
        Some(n) => format!(
            "<D:resourcetype/><D:getcontentlength>{n}</D:getcontentlength><D:getcontenttype>application/octet-stream</D:getcontenttype>"
        ),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>{href}</D:href><D:propstat><D:prop>{props}<D:getlastmodified>{modified}</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>\n",
        href = xml_escape(href),
        modified = http_date(SystemTime::now()),
    );
    let mut resp = (StatusCode::MULTI_STATUS, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    resp
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An IMF-fixdate (`Mon, 23 Nov 2026 14:00:00 GMT`), as `getlastmodified` carries.
pub(crate) fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil_from_days(days as i64);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_442_400);
        assert_eq!(http_date(t), "Mon, 23 Nov 2026 14:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn paths_drop_empty_segments() {
        assert_eq!(object_path("/a//b/c/k"), ("a/b/c/k".into(), false));
        assert_eq!(object_path("/a/b/"), ("a/b".into(), true));
        assert_eq!(object_path("/"), (String::new(), true));
    }

    #[test]
    fn escapes_hrefs() {
        assert_eq!(xml_escape("/a&b<c>"), "/a&amp;b&lt;c&gt;");
    }
}

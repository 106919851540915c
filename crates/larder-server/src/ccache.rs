//! ccache's HTTP remote storage (ccache 4.7 and later).
//!
//! ccache names each value by a 20-byte digest. In URLs (ccache 4.7) it appears in its "string
//! form" (4 hex digits for the first two bytes, then 29 base32hex digits for the other 18: 33
//! characters) in the `subdirs` and `flat` layouts, and as 40 hex digits padded to 64 in the
//! `bazel` layout. Below the URL it is given (which may add its own sub-path below our prefix):
//! - `subdirs` (default): `<sub>/<first 2 chars>/<the rest>`;
//! - `flat`: `<sub>/<key>`;
//! - `bazel`: `<sub>/ac/<40 hex digits + their first 24>` (64 digits, to look like a SHA-256).
//!
//! The 40-hex form is also accepted in `subdirs` and `flat`. All of them map to the larder key
//! `ccache/<sub>/<40 hex digits>`, so a cache filled through one layout serves the others.
//! Values are stored as in [`crate::value`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_core::{ByteStream, Key};

use crate::app::{AppState, below, sized_response};
use crate::body::with_body;
use crate::error::{ApiError, ApiResult};
use crate::value::{get_value, head_value, put_value};

/// The protocol's routes below `prefix`.
pub(crate) fn router(prefix: &str) -> Router<AppState> {
    Router::new().route(
        &below(prefix, "/{*path}"),
        get(get_h).head(head_h).put(put_h).delete(delete_h),
    )
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Append the bytes of `s`, an even number of lower-case hex digits, to `out`.
fn hex_bytes(s: &str, out: &mut Vec<u8>) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    for pair in s.chunks_exact(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(())
}

/// Decode a ccache key in either form (40 hex digits, or ccache's 33-character string form)
/// to its 20 bytes.
fn decode_key(s: &str) -> Option<Vec<u8>> {
    // Both forms are ASCII; checking first makes the byte offsets below char boundaries.
    if !s.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(20);
    match s.len() {
        40 => hex_bytes(s, &mut out)?,
        33 => {
            hex_bytes(&s[..4], &mut out)?;
            // RFC 4648 base32hex, lower case, no padding: 29 digits carry 18 bytes and one
            // zero bit.
            let (mut acc, mut bits) = (0u32, 0u32);
            for c in s[4..].bytes() {
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'v' => c - b'a' + 10,
                    _ => return None,
                };
                acc = (acc << 5) | u32::from(v);
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            if acc != 0 || out.len() != 20 {
                return None;
            }
        }
        _ => return None,
    }
    Some(out)
}

/// The larder key for a ccache path (any layout and key form).
///
/// # Errors
/// A message when the path is not one ccache would send.
pub fn key_for_path(path: &str) -> Result<Key, String> {
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let last = segments[n - 1];
    let prev = (n >= 2).then(|| segments[n - 2]);
    let found = if last.len() == 64 && is_hex(last) && prev == Some("ac") {
        (last[40..] == last[..24])
            .then(|| decode_key(&last[..40]))
            .flatten()
            .map(|k| (k, n - 2))
    } else if let Some(k) = decode_key(last) {
        Some((k, n - 1))
    } else if let Some(p) = prev.filter(|p| p.len() == 2) {
        decode_key(&format!("{p}{last}")).map(|k| (k, n - 2))
    } else {
        None
    };
    let Some((bytes, sub_len)) = found else {
        return Err(format!(
            "{path:?} is not a ccache key path (layouts subdirs, flat, bazel)"
        ));
    };
    let prefix = larder_core::layer::namespaces::CCACHE;
    let mut name = String::with_capacity(prefix.len() + path.len() + 2 + 2 * bytes.len());
    name.push_str(prefix);
    name.push('/');
    for s in &segments[..sub_len] {
        name.push_str(s);
        name.push('/');
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        name.push(char::from(HEX[usize::from(b >> 4)]));
        name.push(char::from(HEX[usize::from(b & 15)]));
    }
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
    with_body(body, |body| put_from(st, path, headers, body)).await
}

async fn put_from(
    st: AppState,
    path: String,
    headers: HeaderMap,
    body: ByteStream,
) -> ApiResult<Response> {
    st.check_writable()?;
    let key = key(&path)?;
    let data = st.receive_value("value", &headers, body, false).await?;
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

    /// ccache's string form of a digest (`util::format_digest`).
    fn string_form(bytes: &[u8; 20]) -> String {
        let mut s: String = bytes[..2].iter().map(|b| format!("{b:02x}")).collect();
        let alphabet = b"0123456789abcdefghijklmnopqrstuv";
        let (mut acc, mut bits) = (0u32, 0u32);
        for b in &bytes[2..] {
            acc = (acc << 8) | u32::from(*b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                s.push(alphabet[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            s.push(alphabet[((acc << (5 - bits)) & 31) as usize] as char);
        }
        s
    }

    #[test]
    fn the_three_layouts_and_two_forms_map_to_one_key() {
        let bytes: [u8; 20] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5));
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let short = string_form(&bytes);
        assert_eq!(short.len(), 33);
        let want = format!("ccache/{hex}");
        for path in [
            short.clone(),
            format!("{}/{}", &short[..2], &short[2..]),
            hex.clone(),
            format!("{}/{}", &hex[..2], &hex[2..]),
            format!("ac/{hex}{}", &hex[..24]),
        ] {
            assert_eq!(key_for_path(&path).unwrap().as_str(), want, "{path}");
        }
        let team = key_for_path(&format!("team/{short}")).unwrap();
        assert_eq!(team.as_str(), format!("ccache/team/{hex}"));
    }

    #[test]
    fn a_key_seen_from_ccache_4_7_decodes() {
        // From a real ccache 4.7.5 log: `subdirs` path e0/0f9p1tq6uqmg090h6k85g2f7gh3ifq2.
        let k = key_for_path("e0/0f9p1tq6uqmg090h6k85g2f7gh3ifq2").unwrap();
        assert_eq!(
            k,
            key_for_path("e00f9p1tq6uqmg090h6k85g2f7gh3ifq2").unwrap()
        );
        assert!(k.as_str().starts_with("ccache/e00f"));
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
            // A trailing bit that is not zero: not a canonical string form.
            "e00f9p1tq6uqmg090h6k85g2f7gh3ifq3",
            "e00f9p1tq6uqmg090h6k85g2f7gh3ifqw",
            // Multi-byte characters where the key forms are sliced: no panic, a refusal.
            "abc\u{e9}aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ab/c\u{e9}aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "\u{e9}\u{e9}aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &format!("ac/{}\u{e9}{}", &k[..39], "0".repeat(23)),
        ] {
            assert!(key_for_path(bad).is_err(), "{bad:?}");
        }
    }
}

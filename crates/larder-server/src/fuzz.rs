//! Entry points for the fuzz targets (`fuzz/`) and for the tests that replay their corpora:
//! every protocol's request-path parsing, with the invariants the keys it makes must keep. Not
//! part of the server's API.

use larder_core::Key;

/// Map `path` to a key as each protocol's handler does (ccache, Bazel, WebDAV, waf; the native
/// protocol takes the key as given) and panic if a key made from it leaves its protocol's
/// namespace or is not a valid key when parsed again.
pub fn check_request_path(path: &str) {
    let made = [
        ("ccache/", crate::ccache::key_for_path(path).ok()),
        ("bazel-", crate::bazel::key_for_path(path)),
        (
            "dav/",
            crate::dav::key(&crate::dav::object_path(path).0).ok(),
        ),
        ("waf/", crate::waf::key(path).ok()),
        ("", Key::new(path).ok()),
    ];
    for (prefix, key) in made {
        let Some(key) = key else { continue };
        let name = key.as_str();
        assert!(name.starts_with(prefix), "{path:?} made {name:?}");
        assert!(
            !name.split('/').any(|s| s == ".." || s == "."),
            "{path:?} made {name:?}"
        );
        assert_eq!(Key::new(name).ok().as_ref(), Some(&key), "{path:?}");
        assert_eq!(key.storage_name().len(), 64, "{path:?}");
    }
}

/// Run the multipart guard over `content_type` and `body` cut three ways (whole, in two at
/// `cut`, byte by byte) and panic unless the verdict (passed, or which bound tripped) is the
/// same each time: the guard must follow the body's structure however the network cuts it.
pub fn check_multipart(content_type: &str, body: &[u8], cut: usize) {
    let boundary = crate::multipart::boundary(content_type).unwrap_or_else(|| "XyZ".to_owned());
    let at = cut % (body.len() + 1);
    let whole = multipart_verdict(&boundary, vec![body]);
    let halves = multipart_verdict(&boundary, vec![&body[..at], &body[at..]]);
    let bytes = multipart_verdict(&boundary, body.chunks(1).collect());
    assert_eq!(whole, halves, "cut at {at}");
    assert_eq!(whole, bytes, "cut into bytes");
}

/// Which bound the guard tripped on `chunks`, if any (small bounds, so fuzzed bodies reach them).
fn multipart_verdict(boundary: &str, chunks: Vec<&[u8]>) -> Option<String> {
    use futures::{FutureExt, StreamExt};

    let bounds = crate::multipart::Bounds {
        preamble: 64,
        header: 64,
        parts: 3,
    };
    let tripped = crate::multipart::Tripped::default();
    let items: Vec<Result<bytes::Bytes, std::io::Error>> = chunks
        .into_iter()
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let mut guarded = Box::pin(crate::multipart::guard(
        futures::stream::iter(items),
        boundary,
        bounds,
        tripped.clone(),
    ));
    // Every item of an iterator stream is ready: polling once each runs the guard to the end.
    while let Some(Some(item)) = guarded.next().now_or_never() {
        if item.is_err() {
            break;
        }
    }
    tripped.get().map(|limit| format!("{limit:?}"))
}

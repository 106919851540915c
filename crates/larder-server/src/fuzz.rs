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

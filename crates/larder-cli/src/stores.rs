//! Store URLs to stores.
//!
//! A store URL is a path or `file://PATH` (the filesystem store), or a remote URL:
//! `http(s)://`, `s3://bucket/prefix`, `minio://host:port/bucket/prefix`, `gs://bucket/prefix`,
//! `opendal+<service>://...`, `cmd://...`. Each backend sits behind a cargo feature; a backend
//! compiled out is a stub that names the feature to build with. [`open`] is the one place that
//! maps schemes to backends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use larder_core::Store;

use crate::config::Config;

#[cfg(feature = "cmd")]
mod cmd;
// Unused (but for its test) in a build with every backend.
#[cfg_attr(
    all(
        feature = "http",
        feature = "s3",
        feature = "gcs",
        feature = "cmd",
        feature = "opendal"
    ),
    allow(dead_code)
)]
mod disabled;
#[cfg(feature = "fs")]
mod fs;
#[cfg(not(feature = "fs"))]
#[path = "stores/fs_disabled.rs"]
mod fs;
#[cfg(feature = "http")]
mod http;

#[cfg(feature = "gcs")]
mod gcs;
#[cfg(feature = "opendal")]
mod opendal;
#[cfg(feature = "s3")]
mod s3;

/// An open store.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The local directory it keeps its files in, when it has one (the filesystem store): home
    /// of the stat cache, and where free disk space is measured.
    pub(crate) local_dir: Option<PathBuf>,
}

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreUrl {
    /// `file` for paths, else the URL's scheme, lower-cased.
    pub(crate) scheme: String,
    /// For `file`, the path; else the whole URL.
    pub(crate) location: String,
}

impl StoreUrl {
    /// Split `url` into scheme and location. Anything without `scheme://` is a path.
    pub(crate) fn parse(url: &str) -> Result<StoreUrl> {
        if url.is_empty() {
            bail!("empty store URL");
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(StoreUrl {
                scheme: "file".into(),
                location: url.to_owned(),
            });
        };
        let valid = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid {
            // `./odd://dir` is a path after all.
            return Ok(StoreUrl {
                scheme: "file".into(),
                location: url.to_owned(),
            });
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            // `file://localhost/x` and `file:///x` both mean `/x`.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if path.is_empty() {
                bail!("store URL {url:?} names no directory");
            }
            return Ok(StoreUrl {
                scheme,
                location: path.to_owned(),
            });
        }
        Ok(StoreUrl {
            scheme,
            location: url.to_owned(),
        })
    }
}

/// Open the store the configuration names. The registry of backends: one arm per scheme.
pub(crate) fn open(config: &Config) -> Result<Opened> {
    let url = StoreUrl::parse(&config.store.value)?;
    match url.scheme.as_str() {
        "file" => fs::open(&url, config),
        #[cfg(feature = "http")]
        "http" => http::open(&url),
        #[cfg(not(feature = "http"))]
        "http" => disabled::open(&url, "http"),
        #[cfg(feature = "http")]
        "https" => http::open(&url),
        #[cfg(not(feature = "http"))]
        "https" => disabled::open(&url, "http"),
        #[cfg(feature = "s3")]
        "s3" | "minio" => s3::open(&url, config),
        #[cfg(not(feature = "s3"))]
        "s3" | "minio" => disabled::open(&url, "s3"),
        #[cfg(feature = "gcs")]
        "gs" => gcs::open(&url, config),
        #[cfg(not(feature = "gcs"))]
        "gs" => disabled::open(&url, "gcs"),
        #[cfg(feature = "cmd")]
        "cmd" => cmd::open(&url),
        #[cfg(not(feature = "cmd"))]
        "cmd" => disabled::open(&url, "cmd"),
        #[cfg(feature = "opendal")]
        s if s.starts_with("opendal+") => opendal::open(&url, config),
        #[cfg(not(feature = "opendal"))]
        s if s.starts_with("opendal+") => disabled::open(&url, "opendal"),
        other => bail!(
            "unknown store URL scheme `{other}` in {:?} (from {}): expected a directory, file://DIR, http(s)://, s3://, minio://, gs://, opendal+SERVICE:// or cmd://",
            config.store.value,
            config.store.source
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let p = StoreUrl::parse("/var/cache/larder").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.location.as_str()),
            ("file", "/var/cache/larder")
        );
        let p = StoreUrl::parse("file:///x/y").unwrap();
        assert_eq!((p.scheme.as_str(), p.location.as_str()), ("file", "/x/y"));
        let p = StoreUrl::parse("file://localhost/x").unwrap();
        assert_eq!(p.location, "/x");
        let p = StoreUrl::parse("S3://bucket/prefix").unwrap();
        assert_eq!(p.scheme, "s3");
        let p = StoreUrl::parse("opendal+azblob://c/p").unwrap();
        assert_eq!(p.scheme, "opendal+azblob");
        assert!(StoreUrl::parse("").is_err());
        assert!(StoreUrl::parse("file://").is_err());
    }

    #[test]
    fn compiled_out_stores_name_their_feature() {
        for (url, feature) in [
            ("minio://h:1/b/p", "s3"),
            ("gs://b/p", "gcs"),
            ("cmd://x?copy=cp", "cmd"),
        ] {
            let url = StoreUrl::parse(url).unwrap();
            let err = disabled::open(&url, feature).unwrap_err().to_string();
            assert!(err.contains(&format!("`{feature}` feature")), "{err}");
        }
    }
}

//! Store URLs to stores.
//!
//! A store URL is a path or `file://PATH` (the filesystem store), or a remote URL:
//! `http(s)://`, `s3://bucket/prefix`, `minio://host:port/bucket/prefix`, `gs://bucket/prefix`,
//! `opendal+<service>://...`, `cmd://...`. Each backend sits behind a cargo feature; a backend
//! compiled out is a stub that names the feature to build with. [`open`] is the one place that
//! maps schemes to backends.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use larder_core::Store;
use larder_core::layer::best_effort::{BestEffort, BestEffortConfig};
use larder_core::layer::read_only::ReadOnly;
use larder_core::layer::retry::Retry;
use larder_core::layer::tiered::{Tier, Tiered};
use larder_core::layer::trust::{PublicKey, Signed, SigningKey, Trusted};

use crate::config::{Config, Source};

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
mod lazy;
#[cfg(feature = "opendal")]
mod opendal;
#[cfg(feature = "s3")]
mod s3;

/// An open store.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The local directory it keeps its files in, when it has one (the filesystem store, or
    /// the first tier's): home of the stat cache, and where free disk space is measured.
    pub(crate) local_dir: Option<PathBuf>,
    /// The tiers, when the configuration names several stores (or a remote one with the local
    /// cache in front of it).
    pub(crate) tiers: Option<Arc<Tiered>>,
    /// The store's own trim budget, from `?max-size=`/`?max-entries=` on its URL, when it is
    /// opened on its own (tiers keep theirs in [`Tier`]).
    pub(crate) budget: Option<larder_core::TrimOptions>,
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

/// Open the store the configuration names: one store, or tiers, fastest first.
///
/// - A remote store first in the list gets the local filesystem cache (the default directory)
///   in front of it, as ccache does, unless `no_local` is set.
/// - With several stores, each remote one is wrapped in [`Retry`] and [`BestEffort`] (a remote
///   that fails or hangs costs at most `remote_timeout` once, then the command goes on with the
///   tiers that answer), and the whole is a [`Tiered`] store: a hit in a slower tier is copied
///   into the faster ones; writes go to every writable tier.
/// - `?read-only` on a store's URL, or `read_only` for every remote one, makes a tier that is
///   only read.
/// - With `trust_require`, every configured store is [`Trusted`]: its entries are hits only
///   when one of those keys signed them. The local cache larder puts in front of a remote (and
///   the default cache when no store is configured) is the user's own and is not checked; what
///   it copies from a checked tier was checked on the way in.
/// - With `signing_key`, the whole is [`Signed`]: every entry stored, in every tier, carries
///   the signature.
pub(crate) fn open(config: &Config) -> Result<Opened> {
    open_with(config, None)
}

/// [`open`] for a process that outlives many builds (the worker, the ccache helper): a remote
/// tier skipped after a failure is tried again once `retry_after` has passed, instead of being
/// skipped for the rest of the process.
pub(crate) fn open_long_lived(config: &Config, retry_after: Duration) -> Result<Opened> {
    open_with(config, Some(retry_after))
}

fn open_with(config: &Config, retry_after: Option<Duration>) -> Result<Opened> {
    let mut opened = open_tiers(config, retry_after)?;
    if let Some(path) = &config.signing_key.value {
        let key = SigningKey::read_file(path)
            .with_context(|| format!("cannot sign entries (from {})", config.signing_key.source))?;
        warn_if_readable_by_others(path);
        opened.store = Arc::new(Signed::new(opened.store, Arc::new(key)));
    }
    Ok(opened)
}

/// A private key file that others may read is worth a warning (not an error: CI systems write
/// secrets with their own modes).
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "the signing key {} is readable by other users (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

/// Entries of the configured stores that no trusted key signed, read as misses in this
/// process (the worker's statistics).
static UNTRUSTED_READS: AtomicU64 = AtomicU64::new(0);

/// How many entries read so far no trusted key signed (see [`open`]).
pub(crate) fn untrusted_reads() -> u64 {
    UNTRUSTED_READS.load(Ordering::Relaxed)
}

/// `store`, checked against the trusted keys when there are some.
fn trusted(store: Arc<dyn Store>, keys: Option<&Arc<[PublicKey]>>) -> Arc<dyn Store> {
    match keys {
        Some(keys) => Arc::new(
            Trusted::new(store, Arc::clone(keys)).on_rejected(Arc::new(|_| {
                UNTRUSTED_READS.fetch_add(1, Ordering::Relaxed);
            })),
        ),
        None => store,
    }
}

/// [`open`] without signing.
fn open_tiers(config: &Config, retry_after: Option<Duration>) -> Result<Opened> {
    let mut tiers: Vec<(StoreUrl, TierParams)> = Vec::new();
    for value in &config.store.value {
        let (value, mut params) = tier_params(value)?;
        let url = StoreUrl::parse(&value)?;
        params.read_only |= config.read_only.value && url.scheme != "file";
        tiers.push((url, params));
    }
    let Some((first, _)) = tiers.first() else {
        bail!("no store configured (from {})", config.store.source);
    };
    // The trusted keys, when the configured stores are checked (see [`open`]).
    let keys: Option<Arc<[PublicKey]>> = (!config.trust_require.value.is_empty()
        && config.store.source != Source::Default)
        .then(|| config.trust_require.value.clone().into());
    let mut implicit_local = false;
    if first.scheme != "file" && !config.no_local.value {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match crate::config::default_cache_dir(&env) {
            Some(dir) => {
                let params = TierParams::default();
                tiers.insert(0, (StoreUrl::parse(&dir.display().to_string())?, params));
                implicit_local = true;
            }
            None => tracing::warn!(
                "no local cache in front of {}: set HOME or XDG_CACHE_HOME (or --no-local to say so)",
                first.location
            ),
        }
    }
    if let [(url, params)] = &tiers[..] {
        let mut opened = open_one(url, config)?;
        if params.read_only {
            opened.store = Arc::new(ReadOnly::new(opened.store));
        }
        opened.store = trusted(opened.store, keys.as_ref());
        opened.budget = params.budget.has_budget().then(|| params.budget.clone());
        return Ok(opened);
    }
    let timeout = config.remote_timeout.value;
    let mut built = Vec::with_capacity(tiers.len());
    let mut local_dir = None;
    for (i, (url, params)) in tiers.iter().enumerate() {
        let store: Arc<dyn Store> = if url.scheme == "file" {
            let opened = open_one(url, config)?;
            if local_dir.is_none() {
                local_dir = opened.local_dir.clone();
            }
            opened.store
        } else {
            // A slower remote tier is opened on first use: a local hit never pays for its
            // client. The first tier is opened now, and an unknown scheme is an error now.
            let open = opener(url, config)?;
            let remote: Arc<dyn Store> = if i == 0 {
                open(url, config)?.store
            } else {
                let (url, config) = (url.clone(), config.clone());
                let name = url.location.clone();
                Arc::new(lazy::Lazy::new(
                    name,
                    Box::new(move || Ok(open(&url, &config)?.store)),
                ))
            };
            let mut config = BestEffortConfig::new(timeout, timeout * 60);
            if let Some(after) = retry_after {
                config = config.retry_after(after);
            }
            Arc::new(BestEffort::with_config(Retry::new(remote), config))
        };
        let store = if implicit_local && i == 0 {
            store
        } else {
            trusted(store, keys.as_ref())
        };
        let tier = if params.read_only {
            Tier::read_only(store)
        } else {
            Tier::new(store)
        };
        built.push(tier.with_budget(params.budget.clone()));
    }
    let tiered = Arc::new(Tiered::new(built).context("cannot combine the stores into tiers")?);
    Ok(Opened {
        store: tiered.clone(),
        local_dir,
        tiers: Some(tiered),
        budget: None,
    })
}

/// What a store URL's query may say about its tier, taken off the URL before the store sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TierParams {
    /// `?read-only`: the tier is only read.
    pub(crate) read_only: bool,
    /// `?max-size=SIZE`, `?max-entries=N`: the tier's own trim budget (`larder trim`, and
    /// `larder serve` for the store behind its directory).
    pub(crate) budget: larder_core::TrimOptions,
}

/// A store URL without the query parameters that configure its tier (`read-only`,
/// `max-size`, `max-entries`; `_` may stand for `-`), and what they said.
///
/// # Errors
/// A budget that is not a size or a count.
pub(crate) fn tier_params(value: &str) -> Result<(String, TierParams)> {
    let mut params = TierParams::default();
    let Some((base, query)) = value.split_once('?') else {
        return Ok((value.to_owned(), params));
    };
    let mut rest = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        let (name, val) = p.split_once('=').unwrap_or((p, ""));
        match name.replace('_', "-").as_str() {
            "read-only" if matches!(val, "" | "true" | "1") => params.read_only = true,
            "read-only" if matches!(val, "false" | "0") => {}
            "max-size" => {
                let size = larder_core::size::parse_size(val).with_context(|| {
                    format!("max-size={val:?} in the store URL {value:?} is not a size (e.g. 50G)")
                })?;
                params.budget.max_bytes = Some(size);
            }
            "max-entries" => {
                let n = val.parse::<u64>().with_context(|| {
                    format!("max-entries={val:?} in the store URL {value:?} is not a count")
                })?;
                params.budget.max_entries = Some(n);
            }
            _ => rest.push(p),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, params))
}

/// How one store is opened.
type Opener = fn(&StoreUrl, &Config) -> Result<Opened>;

/// Open one store.
fn open_one(url: &StoreUrl, config: &Config) -> Result<Opened> {
    opener(url, config)?(url, config)
}

/// The registry of backends: one arm per scheme. An unknown scheme is an error here, before
/// anything is opened.
fn opener(url: &StoreUrl, config: &Config) -> Result<Opener> {
    Ok(match url.scheme.as_str() {
        "file" => fs::open,
        #[cfg(feature = "http")]
        "http" | "https" => http::open,
        #[cfg(not(feature = "http"))]
        "http" | "https" => |u, _| disabled::open(u, "http"),
        #[cfg(feature = "s3")]
        "s3" | "minio" => s3::open,
        #[cfg(not(feature = "s3"))]
        "s3" | "minio" => |u, _| disabled::open(u, "s3"),
        #[cfg(feature = "gcs")]
        "gs" => gcs::open,
        #[cfg(not(feature = "gcs"))]
        "gs" => |u, _| disabled::open(u, "gcs"),
        #[cfg(feature = "cmd")]
        "cmd" => |u, _| cmd::open(u),
        #[cfg(not(feature = "cmd"))]
        "cmd" => |u, _| disabled::open(u, "cmd"),
        #[cfg(feature = "opendal")]
        s if s.starts_with("opendal+") => opendal::open,
        #[cfg(not(feature = "opendal"))]
        s if s.starts_with("opendal+") => |u, _| disabled::open(u, "opendal"),
        other => bail!(
            "unknown store URL scheme `{other}` in {:?} (from {}): expected a directory, file://DIR, http(s)://, s3://, minio://, gs://, opendal+SERVICE:// or cmd://",
            url.location,
            config.store.source
        ),
    })
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
    fn tier_params_are_taken_off_the_url() {
        let ro = |url: &str| tier_params(url).map(|(u, p)| (u, p.read_only)).unwrap();
        assert_eq!(ro("s3://b/p"), ("s3://b/p".to_owned(), false));
        assert_eq!(ro("s3://b/p?read-only"), ("s3://b/p".to_owned(), true));
        assert_eq!(
            ro("minio://h:1/b?region=x&read_only=true&tls=true"),
            ("minio://h:1/b?region=x&tls=true".to_owned(), true)
        );
        assert_eq!(ro("http://h/?a=1"), ("http://h/?a=1".to_owned(), false));
        assert_eq!(
            ro("http://h/?read-only=false"),
            ("http://h/".to_owned(), false)
        );

        let (url, p) = tier_params("s3://b/p?max-size=50G&region=x&max_entries=1000").unwrap();
        assert_eq!(url, "s3://b/p?region=x");
        assert_eq!(p.budget.max_bytes, Some(50 << 30));
        assert_eq!(p.budget.max_entries, Some(1000));
        assert!(!p.read_only);
        let err = tier_params("s3://b?max-size=lots").unwrap_err().to_string();
        assert!(err.contains("max-size=\"lots\""), "{err}");
        assert!(tier_params("s3://b?max-entries=-1").is_err());
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

//! Store URLs and settings: `opendal+<service>://…` to an OpenDAL service name and its options.
//!
//! The four services larder knows by name get a URL shape of their own (see the crate docs);
//! any other compiled-in service gets OpenDAL's own URI form for that service. Options come
//! from the URL's query, then from `LARDER_OPENDAL_<OPTION>` environment variables (the query
//! wins), under OpenDAL's own option names (`root`, `endpoint`, `account_key`, `password`, …).
//! A few query keys are larder's own and are not passed on: [`LARDER_KEYS`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use larder_core::eviction::{EvictionPolicy, Lru};
use larder_core::{Error, Result};

use crate::backend::OpendalStore;

/// The URL scheme prefix of this store.
pub const URL_PREFIX: &str = "opendal+";

/// Environment variables `LARDER_OPENDAL_<OPTION>` give OpenDAL options (secrets, mostly).
pub const ENV_PREFIX: &str = "LARDER_OPENDAL_";

/// Query keys larder reads itself: `tls` (https/rediss or not), `list` (`false` for servers that
/// cannot list collections), `part_size` (bytes per part), `retries`, `timeout_ms`,
/// `trim_grace` (seconds; see [`OpendalStoreBuilder::with_trim_grace`]).
pub const LARDER_KEYS: &[&str] = &[
    "tls",
    "list",
    "part_size",
    "retries",
    "timeout_ms",
    "trim_grace",
];

/// The smallest part size accepted (1 MiB): parts are held in memory one or a few at a time.
pub const MIN_PART_SIZE: usize = 1 << 20;

/// OpenDAL services (as of opendal 0.58), for the error that names the feature to enable. A
/// scheme outside this list is not an OpenDAL service at all.
const KNOWN_SERVICES: &[&str] = &[
    "aliyun-drive",
    "alluxio",
    "azblob",
    "azdls",
    "azfile",
    "b2",
    "cacache",
    "cloudflare-kv",
    "compfs",
    "cos",
    "d1",
    "dashmap",
    "dbfs",
    "dropbox",
    "etcd",
    "foundationdb",
    "foyer",
    "fs",
    "ftp",
    "gcs",
    "gdrive",
    "ghac",
    "github",
    "goosefs",
    "gridfs",
    "hdfs",
    "hdfs-native",
    "hf",
    "http",
    "ipfs",
    "ipmfs",
    "koofr",
    "lakefs",
    "memcached",
    "memory",
    "mini-moka",
    "moka",
    "mongodb",
    "monoiofs",
    "mysql",
    "obs",
    "onedrive",
    "oss",
    "pcloud",
    "persy",
    "postgresql",
    "redb",
    "redis",
    "rocksdb",
    "s3",
    "seafile",
    "sftp",
    "sled",
    "sqlite",
    "surrealdb",
    "swift",
    "tikv",
    "tos",
    "upyun",
    "vercel-artifacts",
    "vercel-blob",
    "webdav",
    "webhdfs",
    "yandex-disk",
];

/// How to build an [`OpendalStore`]: the service, its options and larder's own settings.
#[derive(Clone)]
pub struct OpendalStoreBuilder {
    pub(crate) scheme: String,
    /// Options handed to OpenDAL (may hold secrets: never printed).
    pub(crate) options: BTreeMap<String, String>,
    /// For services larder does not map itself: the URL (without `opendal+`) for OpenDAL's
    /// own URI parser.
    pub(crate) uri: Option<String>,
    /// What the store is called in messages (scheme, host and path; no query, no user info).
    pub(crate) name: String,
    pub(crate) list: Option<bool>,
    pub(crate) part_size: usize,
    pub(crate) retries: usize,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) policy: Arc<dyn EvictionPolicy>,
    pub(crate) trim_grace: Duration,
    pub(crate) access_batch: usize,
}

impl std::fmt::Debug for OpendalStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may be secrets: only their names.
        f.debug_struct("OpendalStoreBuilder")
            .field("scheme", &self.scheme)
            .field("name", &self.name)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("list", &self.list)
            .field("part_size", &self.part_size)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy.name())
            .field("trim_grace", &self.trim_grace)
            .finish()
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid(format!(
            "opendal store: `{key}={v}` is not a boolean (true or false)"
        ))),
    }
}

fn parse_num(key: &str, v: &str) -> Result<u64> {
    larder_core::size::parse_size(v)
        .map_err(|e| Error::invalid(format!("opendal store: `{key}={v}` is not a number: {e}")))
}

/// Parts of 8 MiB, but 2 MiB on Redis: its client keeps a read buffer as large as the largest
/// value per pooled connection (measured: 270 MiB of growth moving a 256 MiB blob in 8 MiB
/// parts, 67 MiB in 2 MiB parts).
fn default_part_size(scheme: &str) -> usize {
    if scheme == "redis" { 2 << 20 } else { 8 << 20 }
}

impl OpendalStoreBuilder {
    /// A builder for OpenDAL service `scheme` with no options yet.
    pub fn new(scheme: impl Into<String>) -> Self {
        let scheme = scheme.into().to_ascii_lowercase();
        OpendalStoreBuilder {
            name: format!("{URL_PREFIX}{scheme}"),
            options: BTreeMap::new(),
            uri: None,
            list: None,
            part_size: default_part_size(&scheme),
            scheme,
            retries: 3,
            timeout: Duration::from_secs(30),
            concurrency: 16,
            policy: Arc::new(Lru),
            trim_grace: Duration::from_secs(3600),
            access_batch: 10_000,
        }
    }

    /// Parse `opendal+<service>://…` and read `LARDER_OPENDAL_*` from the environment.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a URL that is not `opendal+…`, a bad larder key, or a URL
    /// shape the service does not take.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_and_env(url, std::env::vars())
    }

    /// [`from_url`](Self::from_url) with the environment given (for tests).
    ///
    /// # Errors
    /// As [`from_url`](Self::from_url).
    pub fn from_url_and_env(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("opendal store URL {url:?}: {why}"));
        let Some(rest) = url.get(..URL_PREFIX.len()).and_then(|p| {
            p.eq_ignore_ascii_case(URL_PREFIX)
                .then(|| &url[URL_PREFIX.len()..])
        }) else {
            return Err(bad("expected opendal+SERVICE://…"));
        };
        let parsed = url::Url::parse(rest).map_err(|e| bad(&e.to_string()))?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        let mut b = Self::new(&scheme);

        // Environment first, the URL's query over it.
        for (k, v) in env {
            if let Some(opt) = k.strip_prefix(ENV_PREFIX)
                && !opt.is_empty()
            {
                b.set_option(&opt.to_ascii_lowercase(), &v)?;
            }
        }
        let mut tls = None;
        for (k, v) in parsed.query_pairs() {
            let k = k.to_ascii_lowercase();
            if k == "tls" {
                tls = Some(parse_bool(&k, &v)?);
            } else {
                b.set_option(&k, &v)?;
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials in the URL are not taken (they would end up in logs); use LARDER_OPENDAL_USERNAME / LARDER_OPENDAL_PASSWORD or the service's key options",
            ));
        }
        let authority = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| match parsed.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            });
        let path = parsed.path().trim_matches('/').to_owned();
        let http = |default_tls: bool| {
            if tls.unwrap_or(default_tls) {
                "https"
            } else {
                "http"
            }
        };
        match scheme.as_str() {
            "fs" => {
                if authority.as_deref().is_some_and(|a| a != "localhost") {
                    return Err(bad("fs takes a local path: opendal+fs:///ABSOLUTE/DIR"));
                }
                if path.is_empty() {
                    return Err(bad("names no directory: opendal+fs:///ABSOLUTE/DIR"));
                }
                let root = format!("/{path}");
                b.options
                    .entry("atomic_write_dir".into())
                    .or_insert_with(|| format!("{root}/.tmp"));
                b.options.insert("root".into(), root);
            }
            "webdav" => {
                let host = authority
                    .clone()
                    .ok_or_else(|| bad("opendal+webdav://HOST[:PORT]/PATH"))?;
                b.options
                    .entry("endpoint".into())
                    .or_insert_with(|| format!("{}://{host}", http(true)));
                b.options.insert("root".into(), format!("/{path}"));
            }
            "azblob" => {
                let host = authority.clone().ok_or_else(|| {
                    bad("opendal+azblob://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX")
                })?;
                let (container, prefix) = path.split_once('/').unwrap_or((&path, ""));
                if container.is_empty() {
                    return Err(bad(
                        "names no container: opendal+azblob://HOST/CONTAINER/PREFIX",
                    ));
                }
                b.options.insert("container".into(), container.to_owned());
                b.options
                    .entry("endpoint".into())
                    .or_insert_with(|| format!("{}://{host}", http(true)));
                b.options.insert("root".into(), format!("/{prefix}"));
            }
            "redis" => {
                let host = authority
                    .clone()
                    .ok_or_else(|| bad("opendal+redis://HOST:PORT/PREFIX"))?;
                let proto = if tls.unwrap_or(false) {
                    "rediss"
                } else {
                    "redis"
                };
                b.options
                    .entry("endpoint".into())
                    .or_insert_with(|| format!("{proto}://{host}"));
                b.options.insert("root".into(), format!("/{path}"));
            }
            _ => {
                // OpenDAL's own URI form for this service; the options go along.
                let mut plain = parsed.clone();
                plain.set_query(None);
                b.uri = Some(plain.to_string());
            }
        }
        b.name = format!(
            "{URL_PREFIX}{scheme}://{}/{path}",
            authority.unwrap_or_default()
        );
        Ok(b)
    }

    /// Set one option: larder's own keys (see [`LARDER_KEYS`]) or an OpenDAL option.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a larder key with a bad value.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "list" => self.list = Some(parse_bool(key, value)?),
            "part_size" => {
                let n = parse_num(key, value)?;
                self.part_size = usize::try_from(n)
                    .ok()
                    .filter(|n| *n >= MIN_PART_SIZE)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "opendal store: part_size must be at least {MIN_PART_SIZE} bytes"
                        ))
                    })?;
            }
            "retries" => self.retries = parse_num(key, value)? as usize,
            "timeout_ms" => self.timeout = Duration::from_millis(parse_num(key, value)?),
            "trim_grace" => self.trim_grace = Duration::from_secs(parse_num(key, value)?),
            // `tls` only means something in a URL; from the environment it is ignored.
            "tls" => {}
            _ => {
                self.options.insert(key.to_owned(), value.to_owned());
            }
        }
        Ok(self)
    }

    /// Set an OpenDAL option (or a larder key).
    ///
    /// # Errors
    /// As [`set_option`](Self::set_option).
    pub fn with_option(mut self, key: &str, value: &str) -> Result<Self> {
        self.set_option(key, value)?;
        Ok(self)
    }

    /// Whether the store lists (default: when the service can). `false` for servers that do
    /// not list collections, such as `larder serve`'s WebDAV tree.
    pub fn with_list(mut self, list: bool) -> Self {
        self.list = Some(list);
        self
    }

    /// Retries of temporary errors per operation (default 3).
    pub fn with_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Bound on each control request (stat, delete, small reads and writes), and on each
    /// stall of a transfer (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The eviction policy trims use (default: least recently used, by the access records
    /// clients leave; see `docs/remote-trim.md`).
    pub fn with_eviction_policy(mut self, policy: Arc<dyn EvictionPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// How old an unreferenced blob must be before a trim deletes it (default 1 hour). Writers
    /// reusing a blob older than half of it upload it again (a refresh), so it outlives the
    /// entry they are about to write.
    pub fn with_trim_grace(mut self, grace: Duration) -> Self {
        self.trim_grace = grace;
        self
    }

    /// Distinct hit entries buffered before an access record is written (default 10 000);
    /// the rest go at [`Store::flush`](larder_core::Store::flush).
    pub fn with_access_batch(mut self, n: usize) -> Self {
        self.access_batch = n.max(1);
        self
    }

    /// The OpenDAL service name.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The options that will be handed to OpenDAL, by name (values are not shown: secrets).
    pub fn option_names(&self) -> impl Iterator<Item = &str> {
        self.options.keys().map(String::as_str)
    }

    /// An option's value.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// Build the store. Nothing is contacted yet (except that the `fs` service creates its
    /// directories).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the service is not compiled in (naming the cargo feature to
    /// enable) or OpenDAL rejects the options.
    pub fn build(self) -> Result<OpendalStore> {
        crate::backend::install();
        let registered = opendal::OperatorRegistry::get().schemes();
        if !registered.contains(&self.scheme) {
            return Err(not_compiled_in(&self.scheme));
        }
        OpendalStore::from_builder(self)
    }
}

/// Services this crate has a `services-<name>` feature for.
const FEATURED_SERVICES: &[&str] = &["fs", "webdav", "azblob", "redis"];

/// The error for a service this build does not have.
pub(crate) fn not_compiled_in(scheme: &str) -> Error {
    if FEATURED_SERVICES.contains(&scheme) {
        Error::invalid(format!(
            "the OpenDAL service `{scheme}` is not compiled into this build: enable the `services-{scheme}` feature of larder-opendal (the larder CLI's `opendal` feature includes it)"
        ))
    } else if KNOWN_SERVICES.contains(&scheme) {
        Error::invalid(format!(
            "the OpenDAL service `{scheme}` is not compiled into this build, and larder-opendal has no feature for it yet: add `services-{scheme} = [\"opendal/services-{scheme}\"]` to its Cargo.toml and build with that feature"
        ))
    } else {
        Error::invalid(format!(
            "`{scheme}` is not an OpenDAL service (larder-opendal has features for {})",
            FEATURED_SERVICES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn webdav_url_maps_to_endpoint_and_root() {
        let b = OpendalStoreBuilder::from_url_and_env(
            "opendal+webdav://127.0.0.1:8080/dav/team?tls=false&list=false",
            env(&[("LARDER_OPENDAL_PASSWORD", "s3cret"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(b.scheme(), "webdav");
        assert_eq!(b.option("endpoint"), Some("http://127.0.0.1:8080"));
        assert_eq!(b.option("root"), Some("/dav/team"));
        assert_eq!(b.option("password"), Some("s3cret"));
        assert_eq!(b.list, Some(false));
        assert!(!format!("{b:?}").contains("s3cret"));
        let b = OpendalStoreBuilder::from_url_and_env("opendal+webdav://h/p", env(&[])).unwrap();
        assert_eq!(b.option("endpoint"), Some("https://h"));
    }

    #[test]
    fn query_wins_over_env() {
        let b = OpendalStoreBuilder::from_url_and_env(
            "opendal+redis://127.0.0.1:6379/cache?db=2",
            env(&[("LARDER_OPENDAL_DB", "1")]),
        )
        .unwrap();
        assert_eq!(b.option("db"), Some("2"));
        assert_eq!(b.option("endpoint"), Some("redis://127.0.0.1:6379"));
        assert_eq!(b.option("root"), Some("/cache"));
    }

    #[test]
    fn fs_and_azblob_shapes() {
        let b =
            OpendalStoreBuilder::from_url_and_env("opendal+fs:///var/cache/l", env(&[])).unwrap();
        assert_eq!(b.option("root"), Some("/var/cache/l"));
        assert_eq!(b.option("atomic_write_dir"), Some("/var/cache/l/.tmp"));
        assert!(OpendalStoreBuilder::from_url_and_env("opendal+fs://host/x", env(&[])).is_err());
        assert!(OpendalStoreBuilder::from_url_and_env("opendal+fs:///", env(&[])).is_err());
        let b = OpendalStoreBuilder::from_url_and_env(
            "opendal+azblob://acct.blob.core.windows.net/cont/a/b",
            env(&[]),
        )
        .unwrap();
        assert_eq!(b.option("container"), Some("cont"));
        assert_eq!(b.option("root"), Some("/a/b"));
        assert_eq!(
            b.option("endpoint"),
            Some("https://acct.blob.core.windows.net")
        );
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "webdav://h/p",
            "opendal+webdav:///p",
            "opendal+webdav://user:pw@h/p",
            "opendal+webdav://h/p?part_size=1",
            "opendal+webdav://h/p?list=maybe",
        ] {
            let e = OpendalStoreBuilder::from_url_and_env(url, env(&[])).unwrap_err();
            assert_eq!(e.kind(), larder_core::ErrorKind::InvalidInput, "{url}: {e}");
        }
    }

    #[cfg(not(feature = "services-redis"))]
    #[test]
    fn a_featured_service_left_out_names_its_feature() {
        let e = OpendalStoreBuilder::from_url_and_env("opendal+redis://h:1/p", env(&[]))
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("`services-redis` feature"), "{e}");
    }

    #[test]
    fn missing_services_name_their_feature() {
        let e = OpendalStoreBuilder::from_url_and_env("opendal+sftp://h/p", env(&[]))
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("services-sftp"), "{e}");
        assert!(e.to_string().contains("no feature for it yet"), "{e}");
        let e = OpendalStoreBuilder::new("nosuch").build().unwrap_err();
        assert!(e.to_string().contains("not an OpenDAL service"), "{e}");
    }
}

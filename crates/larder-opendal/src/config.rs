//! Store URLs and settings: `opendal+<service>://…` to an OpenDAL service name and its options.
//!
//! The four services larder knows by name get a URL shape of their own (see the crate docs);
//! any other compiled-in service gets OpenDAL's own URI form for that service. Options come
//! from the URL's query, then from `LARDER_OPENDAL_<OPTION>` environment variables (the query
//! wins), under OpenDAL's own option names (`root`, `endpoint`, `account_key`, `password`, …).
//! A few query keys are larder's own and are not passed on: [`LARDER_KEYS`]. What every bucket
//! store is configured with (time-outs, grace, policy) is [`BucketSettings`], set through
//! [`BucketBuilder`].

use std::collections::BTreeMap;
use std::time::Duration;

use larder_bucket::settings::{boolean, env_options, number};
use larder_bucket::{BucketBuilder, BucketSettings, FromUrl, InParts, Secret};
use larder_core::{Error, Result};

use crate::backend::OpendalBucket;

/// The URL scheme prefix of this store.
pub const URL_PREFIX: &str = "opendal+";

/// Environment variables `LARDER_OPENDAL_<OPTION>` give OpenDAL options (secrets, mostly).
pub const ENV_PREFIX: &str = "LARDER_OPENDAL_";

/// Query keys larder reads itself: `tls` (https/rediss or not), `list` (`false` for servers that
/// cannot list collections), `part_size` (bytes per part), `timeout_ms` (each request, and each
/// stall of a transfer), and those of every bucket store ([`BucketSettings::apply`]): `retries`,
/// `trim_grace` (seconds), `request_timeout` (seconds), `concurrency`, `access_batch`.
pub const LARDER_KEYS: &[&str] = &[
    "tls",
    "list",
    "part_size",
    "retries",
    "timeout_ms",
    "trim_grace",
    "request_timeout",
    "concurrency",
    "access_batch",
];

/// The smallest part size accepted (1 MiB): parts are held in memory one or a few at a time.
pub const MIN_PART_SIZE: usize = 1 << 20;

/// OpenDAL services (as of opendal 0.58), for the error that names the feature to enable. A
/// scheme outside this list is not an OpenDAL service at all.
const KNOWN_SERVICES: &str = "aliyun-drive alluxio azblob azdls azfile b2 cacache cloudflare-kv \
    compfs cos d1 dashmap dbfs dropbox etcd foundationdb foyer fs ftp gcs gdrive ghac github \
    goosefs gridfs hdfs hdfs-native hf http ipfs ipmfs koofr lakefs memcached memory mini-moka \
    moka mongodb monoiofs mysql obs onedrive oss pcloud persy postgresql redb redis rocksdb s3 \
    seafile sftp sled sqlite surrealdb swift tikv tos upyun vercel-artifacts vercel-blob webdav \
    webhdfs yandex-disk";

/// Services this crate has a `services-<name>` feature for.
const FEATURED_SERVICES: &[&str] = &["fs", "webdav", "azblob", "redis"];

/// How to build an [`OpendalStore`](crate::OpendalStore): the service, its options and
/// larder's own settings (the settings every bucket store shares, and `build`, are
/// [`BucketBuilder`]'s methods).
#[derive(Debug, Clone)]
pub struct OpendalStoreBuilder {
    pub(crate) settings: BucketSettings,
    pub(crate) scheme: String,
    /// Options handed to OpenDAL (may hold secrets: never printed).
    pub(crate) options: BTreeMap<String, Secret>,
    /// For services larder does not map itself: the URL (without `opendal+`) for OpenDAL's
    /// own URI parser.
    pub(crate) uri: Option<String>,
    /// What the store is called in messages (scheme, host and path; no query, no user info).
    pub(crate) name: String,
    pub(crate) list: Option<bool>,
}

impl BucketBuilder for OpendalStoreBuilder {
    type Bucket = InParts<OpendalBucket>;

    fn settings_mut(&mut self) -> &mut BucketSettings {
        &mut self.settings
    }

    /// Nothing is contacted yet (except that the `fs` service creates its directories).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the service is not compiled in (naming the cargo feature to
    /// enable) or OpenDAL rejects the options.
    fn backend(self) -> Result<InParts<OpendalBucket>> {
        OpendalBucket::from_builder(self).map(InParts::new)
    }
}

impl FromUrl for OpendalBucket {
    fn from_url(url: &str) -> Result<OpendalBucket> {
        OpendalBucket::from_builder(OpendalStoreBuilder::from_url(url)?)
    }
}

/// What messages call the store when they name no URL.
const STORE: &str = "opendal store";

impl OpendalStoreBuilder {
    /// A builder for OpenDAL service `scheme` with no options yet.
    pub fn new(scheme: impl Into<String>) -> Self {
        let scheme = scheme.into().to_ascii_lowercase();
        let settings = BucketSettings {
            // Redis's client keeps a read buffer as large as the largest value per pooled
            // connection (measured: 270 MiB of growth moving a 256 MiB blob in 8 MiB parts,
            // 67 MiB in 2 MiB parts).
            part_size: if scheme == "redis" { 2 << 20 } else { 8 << 20 },
            concurrency: 16,
            // One bound (`timeout_ms`) for each request and each stall of a transfer.
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            ..BucketSettings::default()
        };
        OpendalStoreBuilder {
            settings,
            name: format!("{URL_PREFIX}{scheme}"),
            scheme,
            options: BTreeMap::new(),
            uri: None,
            list: None,
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
        for (k, v) in env_options(ENV_PREFIX, env) {
            b.set_option(&k, &v)?;
        }
        let mut tls = None;
        for (k, v) in parsed.query_pairs() {
            let k = k.to_ascii_lowercase();
            if k == "tls" {
                tls = Some(boolean(STORE, &k, &v)?);
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
        let http = if tls.unwrap_or(true) { "https" } else { "http" };
        let host = |shape: &str| authority.clone().ok_or_else(|| bad(shape));
        match scheme.as_str() {
            "fs" => {
                if authority.as_deref().is_some_and(|a| a != "localhost") {
                    return Err(bad("fs takes a local path: opendal+fs:///ABSOLUTE/DIR"));
                }
                if path.is_empty() {
                    return Err(bad("names no directory: opendal+fs:///ABSOLUTE/DIR"));
                }
                let root = format!("/{path}");
                b.default_option("atomic_write_dir", format!("{root}/.tmp"));
                b.put("root", root);
            }
            "webdav" => {
                let host = host("opendal+webdav://HOST[:PORT]/PATH")?;
                b.default_option("endpoint", format!("{http}://{host}"));
                b.put("root", format!("/{path}"));
            }
            "azblob" => {
                let host = host("opendal+azblob://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX")?;
                let (container, prefix) = path.split_once('/').unwrap_or((&path, ""));
                if container.is_empty() {
                    return Err(bad(
                        "names no container: opendal+azblob://HOST/CONTAINER/PREFIX",
                    ));
                }
                b.put("container", container.to_owned());
                b.default_option("endpoint", format!("{http}://{host}"));
                b.put("root", format!("/{prefix}"));
            }
            "redis" => {
                let host = host("opendal+redis://HOST:PORT/PREFIX")?;
                let proto = if tls == Some(true) { "rediss" } else { "redis" };
                b.default_option("endpoint", format!("{proto}://{host}"));
                b.put("root", format!("/{path}"));
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

    fn put(&mut self, key: &str, value: String) {
        self.options.insert(key.into(), Secret(value));
    }

    fn default_option(&mut self, key: &str, value: String) {
        self.options.entry(key.into()).or_insert(Secret(value));
    }

    /// Set one option: larder's own keys (see [`LARDER_KEYS`]) or an OpenDAL option.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a larder key with a bad value.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "list" => self.list = Some(boolean(STORE, key, value)?),
            "part_size" => {
                let bytes = number(STORE, key, value)?;
                self.settings.set_part_size(bytes, MIN_PART_SIZE, STORE)?;
            }
            "timeout_ms" => {
                let t = Duration::from_millis(number(STORE, key, value)?);
                (self.settings.request_timeout, self.settings.read_timeout) = (t, t);
            }
            // `tls` only means something in a URL; from the environment it is ignored.
            "tls" => {}
            _ if self.settings.apply(STORE, key, value)? => {}
            _ => {
                self.options
                    .insert(key.to_owned(), Secret(value.to_owned()));
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
        self.options.get(key).map(|v| v.0.as_str())
    }

    /// Check the service is compiled in.
    pub(crate) fn check_service(&self) -> Result<()> {
        crate::backend::install();
        let schemes = opendal::OperatorRegistry::get().schemes();
        match schemes.contains(&self.scheme) {
            true => Ok(()),
            false => Err(not_compiled_in(&self.scheme)),
        }
    }
}

/// The error for a service this build does not have.
fn not_compiled_in(scheme: &str) -> Error {
    Error::invalid(if FEATURED_SERVICES.contains(&scheme) {
        format!(
            "the OpenDAL service `{scheme}` is not compiled into this build: enable the `services-{scheme}` feature of larder-opendal (the larder CLI's `opendal` feature includes it)"
        )
    } else if KNOWN_SERVICES.split_whitespace().any(|s| s == scheme) {
        format!(
            "the OpenDAL service `{scheme}` is not compiled into this build, and larder-opendal has no feature for it yet: add `services-{scheme} = [\"opendal/services-{scheme}\"]` to its Cargo.toml and build with that feature"
        )
    } else {
        format!(
            "`{scheme}` is not an OpenDAL service (larder-opendal has features for {})",
            FEATURED_SERVICES.join(", ")
        )
    })
}

//! Building an [`S3Store`]: bucket, prefix, endpoint, credentials, transfer sizes, from a URL
//! (`s3://bucket/prefix`, `minio://host:port/bucket/prefix`) and the environment.

use std::sync::Arc;
use std::time::Duration;

use larder_core::Result;
use larder_core::eviction::{EvictionPolicy, Lru};

use crate::backend::S3Store;
use crate::error::config;

/// Env var: access key id for `minio://` stores (else `AWS_ACCESS_KEY_ID`).
pub const ACCESS_KEY_ENV: &str = "LARDER_S3_ACCESS_KEY";
/// Env var: secret access key for `minio://` stores (else `AWS_SECRET_ACCESS_KEY`).
pub const SECRET_KEY_ENV: &str = "LARDER_S3_SECRET_KEY";
/// Env var: endpoint URL for any S3 store (e.g. `http://127.0.0.1:9000`).
pub const ENDPOINT_ENV: &str = "LARDER_S3_ENDPOINT";
/// Env var: region (else `AWS_REGION`, else the AWS chain for `s3://`, `us-east-1` otherwise).
pub const REGION_ENV: &str = "LARDER_S3_REGION";

/// The smallest part S3 accepts in a multipart upload (except the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Where credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// The AWS default chain (env, profile, web identity, ECS, IMDS).
    Chain,
    /// Static keys from [`ACCESS_KEY_ENV`]/[`SECRET_KEY_ENV`] or `AWS_*`, read at build time.
    FromEnv,
    /// Keys given to the builder.
    Static { access: String, secret: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::Chain => f.write_str("Chain"),
            Credentials::FromEnv => f.write_str("FromEnv"),
            Credentials::Static { access, .. } => write!(f, "Static({access}, ***)"),
        }
    }
}

/// Builds an [`S3Store`]. Start from [`S3StoreBuilder::from_url`] or [`S3StoreBuilder::new`].
#[derive(Debug, Clone)]
pub struct S3StoreBuilder {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) path_style: bool,
    pub(crate) region: Option<String>,
    pub(crate) credentials: Credentials,
    pub(crate) part_size: usize,
    pub(crate) parts_in_flight: usize,
    pub(crate) concurrency: usize,
    pub(crate) retries: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) create_only: bool,
    pub(crate) policy: Arc<dyn EvictionPolicy>,
    pub(crate) trim_grace: Duration,
    pub(crate) access_batch: usize,
}

impl S3StoreBuilder {
    /// A store in `bucket` on AWS, with the default credential chain, no prefix.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            path_style: false,
            region: None,
            credentials: Credentials::Chain,
            part_size: 8 << 20,
            parts_in_flight: 4,
            concurrency: 32,
            retries: 3,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15),
            create_only: true,
            policy: Arc::new(Lru),
            trim_grace: Duration::from_secs(3600),
            access_batch: 10_000,
        }
    }

    /// Parse a store URL.
    ///
    /// - `s3://BUCKET[/PREFIX]`: AWS S3 (or [`ENDPOINT_ENV`]), the default credential chain,
    ///   virtual-hosted addressing.
    /// - `minio://HOST:PORT/BUCKET[/PREFIX]`: any S3-compatible server over `http://HOST:PORT`
    ///   (`?tls=true` for https), path-style addressing, static keys from [`ACCESS_KEY_ENV`] and
    ///   [`SECRET_KEY_ENV`] (else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
    ///
    /// Query parameters (both schemes): `endpoint=URL`, `region=NAME`, `path_style=true|false`,
    /// `part_size=BYTES` (multipart part size, at least 5 MiB), `parts_in_flight=N`,
    /// `create_only=false` (for services that reject `If-None-Match: *`),
    /// `request_timeout=SECS` (each attempt of a small request), `trim_grace=SECS` (see
    /// [`S3StoreBuilder::with_trim_grace`]).
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] naming what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| config(format!("{url:?} is not an s3:// or minio:// URL")))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let mut b = match scheme.to_ascii_lowercase().as_str() {
            "s3" => {
                let bucket = segments.next().ok_or_else(|| {
                    config(format!("{url:?} names no bucket (s3://BUCKET/PREFIX)"))
                })?;
                S3StoreBuilder::new(bucket)
            }
            "minio" => {
                let host = segments.next().ok_or_else(|| {
                    config(format!(
                        "{url:?} names no server (minio://HOST:PORT/BUCKET/PREFIX)"
                    ))
                })?;
                let bucket = segments.next().ok_or_else(|| {
                    config(format!(
                        "{url:?} names no bucket (minio://HOST:PORT/BUCKET/PREFIX)"
                    ))
                })?;
                let mut b = S3StoreBuilder::new(bucket);
                b.endpoint = Some(format!("http://{host}"));
                b.path_style = true;
                b.credentials = Credentials::FromEnv;
                b
            }
            other => {
                return Err(config(format!(
                    "{url:?}: scheme {other}:// is not an S3 store (s3:// or minio://)"
                )));
            }
        };
        let prefix: Vec<&str> = segments.collect();
        b = b.with_prefix(prefix.join("/"))?;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let v = percent_decode(v);
            let bool_value = || match v.as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(config(format!("{url:?}: {k}={v} is not true or false"))),
            };
            let number = || {
                larder_core::size::parse_size(&v)
                    .map_err(|_| config(format!("{url:?}: {k}={v} is not a size")))
            };
            match k {
                "endpoint" => b.endpoint = Some(v.clone()),
                "region" => b.region = Some(v.clone()),
                "path_style" => b.path_style = bool_value()?,
                "tls" => {
                    if bool_value()?
                        && let Some(e) = &b.endpoint
                    {
                        b.endpoint = Some(e.replacen("http://", "https://", 1));
                    }
                }
                "part_size" => b = b.with_part_size(number()? as usize)?,
                "parts_in_flight" => b.parts_in_flight = (number()? as usize).max(1),
                "create_only" => b.create_only = bool_value()?,
                "request_timeout" | "trim_grace" => {
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            config(format!("{url:?}: {k}={v} is not a number of seconds"))
                        })?;
                    let d = Duration::from_secs_f64(secs);
                    if k == "trim_grace" {
                        b.trim_grace = d;
                    } else {
                        b.request_timeout = d;
                    }
                }
                other => {
                    return Err(config(format!(
                        "{url:?}: unknown parameter `{other}` (known: endpoint, region, path_style, tls, part_size, parts_in_flight, create_only, request_timeout, trim_grace)"
                    )));
                }
            }
        }
        b.validate_bucket()?;
        Ok(b)
    }

    fn validate_bucket(&self) -> Result<()> {
        let ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
        if ok {
            Ok(())
        } else {
            Err(config(format!(
                "{:?} is not a valid bucket name (3 to 63 of a-z, 0-9, `.`, `-`)",
                self.bucket
            )))
        }
    }

    /// Keep everything under `prefix` in the bucket (`a/b` stores under `a/b/`).
    ///
    /// # Errors
    /// For a prefix with `.`/`..` segments or characters outside `[A-Za-z0-9._-/]`.
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Result<Self> {
        let p = prefix.as_ref().trim_matches('/');
        if p.is_empty() {
            self.prefix = String::new();
            return Ok(self);
        }
        let bad_char = p
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(c)));
        let bad_segment = p.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if bad_char || bad_segment {
            return Err(config(format!(
                "prefix {p:?}: use segments of [A-Za-z0-9._-] separated by `/`"
            )));
        }
        self.prefix = format!("{p}/");
        Ok(self)
    }

    /// Talk to this endpoint (e.g. `http://127.0.0.1:9000`) instead of AWS.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Path-style addressing (`endpoint/bucket/key`), as MinIO-like servers want.
    pub fn with_path_style(mut self, on: bool) -> Self {
        self.path_style = on;
        self
    }

    /// The region to sign for.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials instead of the environment or the AWS chain.
    pub fn with_credentials(
        mut self,
        access_key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::Static {
            access: access_key.into(),
            secret: secret.into(),
        };
        self
    }

    /// Multipart part size (default 8 MiB; at least 5 MiB). Blobs up to this size go up in
    /// one request. Memory for an upload is about `part_size * (parts_in_flight + 1)`.
    ///
    /// # Errors
    /// Below [`MIN_PART_SIZE`].
    pub fn with_part_size(mut self, bytes: usize) -> Result<Self> {
        if bytes < MIN_PART_SIZE {
            return Err(config(format!(
                "part size {bytes} is below S3's minimum of {MIN_PART_SIZE} bytes"
            )));
        }
        self.part_size = bytes;
        Ok(self)
    }

    /// Parts uploaded at once per blob (default 4).
    pub fn with_parts_in_flight(mut self, n: usize) -> Self {
        self.parts_in_flight = n.max(1);
        self
    }

    /// Requests in flight for fan-out operations (find-missing, listing metadata; default 32).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Attempts after the first for a request that failed temporarily (default 3), with the
    /// SDK's exponential backoff and jitter. Permanent errors are never retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Time to open a connection (default 5 s), and the longest wait for a response or
    /// between two chunks of a download (default 60 s).
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// Time allowed for each attempt of a small request (HEAD, DELETE, LIST, entry reads and
    /// writes; default 15 s). Blob transfers are bounded by the connect and read time-outs only.
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Whether create-only writes send `If-None-Match: *` (default on; S3, MinIO and SeaweedFS
    /// honour it). Off: a create-only write checks first, then writes (a small race).
    pub fn with_create_only(mut self, on: bool) -> Self {
        self.create_only = on;
        self
    }

    /// The eviction policy trims use (default: least recently used, by the access records
    /// clients leave; see `docs/remote-trim.md`).
    pub fn with_eviction_policy(mut self, policy: Arc<dyn EvictionPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// How old an unreferenced blob must be before a trim deletes it (default 1 hour). A
    /// writer stores blobs before the entry naming them; this is the time it has to finish.
    /// Writers reusing a blob older than half of it refresh the blob first.
    pub fn with_trim_grace(mut self, grace: Duration) -> Self {
        self.trim_grace = grace;
        self
    }

    /// Distinct hit entries buffered before an access record is written (default 10 000);
    /// the rest is written by [`larder_core::Store::flush`].
    pub fn with_access_batch(mut self, n: usize) -> Self {
        self.access_batch = n.max(1);
        self
    }

    /// Build the store. Clients are made here when the keys are static; with the AWS chain
    /// they are made on first use (loading the chain is asynchronous).
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] for a bad bucket, or a `minio://` store with no keys
    /// in the environment.
    pub fn build(mut self) -> Result<S3Store> {
        self.validate_bucket()?;
        if self.endpoint.is_none()
            && let Ok(e) = std::env::var(ENDPOINT_ENV)
            && !e.is_empty()
        {
            self.endpoint = Some(e);
        }
        if self.region.is_none() {
            self.region = [REGION_ENV, "AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        }
        if self.credentials == Credentials::FromEnv {
            let pick = |a: &str, b: &str| {
                std::env::var(a)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .or_else(|| std::env::var(b).ok().filter(|s| !s.is_empty()))
            };
            let access = pick(ACCESS_KEY_ENV, "AWS_ACCESS_KEY_ID");
            let secret = pick(SECRET_KEY_ENV, "AWS_SECRET_ACCESS_KEY");
            match (access, secret) {
                (Some(access), Some(secret)) => {
                    self.credentials = Credentials::Static { access, secret }
                }
                _ => {
                    return Err(config(format!(
                        "S3 store {}: no credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                        self.describe()
                    )));
                }
            }
        }
        S3Store::from_builder(self)
    }

    /// `s3://bucket/prefix` or `endpoint/bucket/prefix`, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!(
                "{}/{}/{}",
                e.trim_end_matches('/'),
                self.bucket,
                self.prefix
            ),
            None => format!("s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

fn percent_decode(s: &str) -> String {
    // A `%` not followed by two hex digits is kept as it is.
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let b = S3StoreBuilder::from_url("s3://my-bucket/team/cache/").unwrap();
        assert_eq!(b.bucket, "my-bucket");
        assert_eq!(b.prefix, "team/cache/");
        assert_eq!(b.credentials, Credentials::Chain);
        assert!(!b.path_style);
        let b = S3StoreBuilder::from_url("s3://my-bucket").unwrap();
        assert_eq!(b.prefix, "");
        assert!(S3StoreBuilder::from_url("s3://").is_err());
        assert!(S3StoreBuilder::from_url("s3://Bad_Bucket/x").is_err());
        assert!(S3StoreBuilder::from_url("s3://bucket/a/../b").is_err());
    }

    #[test]
    fn minio_urls() {
        let b = S3StoreBuilder::from_url("minio://127.0.0.1:9000/bkt/p?region=eu-west-1").unwrap();
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(b.bucket, "bkt");
        assert_eq!(b.prefix, "p/");
        assert!(b.path_style);
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(b.credentials, Credentials::FromEnv);
        let b = S3StoreBuilder::from_url(
            "minio://h:1/bkt?tls=true&part_size=16MiB&trim_grace=60&request_timeout=2.5",
        )
        .unwrap();
        assert_eq!(b.trim_grace, Duration::from_secs(60));
        assert_eq!(b.request_timeout, Duration::from_millis(2500));
        assert_eq!(b.endpoint.as_deref(), Some("https://h:1"));
        assert_eq!(b.part_size, 16 << 20);
        assert!(S3StoreBuilder::from_url("minio://h:1").is_err());
        assert!(S3StoreBuilder::from_url("minio://h:1/bkt?part_size=1k").is_err());
        let err = S3StoreBuilder::from_url("minio://h:1/bkt?nope=1").unwrap_err();
        assert!(err.to_string().contains("unknown parameter"), "{err}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let b = S3StoreBuilder::new("bkt").with_credentials("AKID", "s3cr3t");
        let shown = format!("{b:?}");
        assert!(
            shown.contains("AKID") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("http%3A%2F%2Fh%3A1"), "http://h:1");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%+1"), "%+1");
    }
}

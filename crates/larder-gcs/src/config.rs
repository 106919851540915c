//! Building a [`GcsStore`]: bucket, prefix, endpoint, credentials, from a `gs://` URL and the
//! environment.

use std::sync::Arc;
use std::time::Duration;

use larder_core::Result;
use larder_core::eviction::{EvictionPolicy, Lru};

use crate::backend::GcsStore;
use crate::error::config;

/// Env var: the JSON API endpoint (default `https://storage.googleapis.com`), e.g.
/// `http://127.0.0.1:4443` for fake-gcs-server.
pub const ENDPOINT_ENV: &str = "LARDER_GCS_ENDPOINT";
/// Env var: `1`/`true` to send no credentials at all (emulators, public buckets) instead of
/// Application Default Credentials.
pub const ANONYMOUS_ENV: &str = "LARDER_GCS_ANONYMOUS";

/// The public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Builds a [`GcsStore`]. Start from [`GcsStoreBuilder::from_url`] or [`GcsStoreBuilder::new`].
#[derive(Debug, Clone)]
pub struct GcsStoreBuilder {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) anonymous: Option<bool>,
    pub(crate) single_shot_max: usize,
    pub(crate) concurrency: usize,
    pub(crate) retries: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) policy: Arc<dyn EvictionPolicy>,
    pub(crate) trim_grace: Duration,
    pub(crate) access_batch: usize,
}

impl GcsStoreBuilder {
    /// A store in `bucket` with Application Default Credentials, no prefix.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            anonymous: None,
            single_shot_max: 8 << 20,
            concurrency: 32,
            retries: 3,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15),
            policy: Arc::new(Lru),
            trim_grace: Duration::from_secs(3600),
            access_batch: 10_000,
        }
    }

    /// Parse `gs://BUCKET[/PREFIX][?PARAMS]`.
    ///
    /// Query parameters: `endpoint=URL`, `anonymous=true|false`, `request_timeout=SECS` (each
    /// attempt of a small request), `trim_grace=SECS` (see
    /// [`GcsStoreBuilder::with_trim_grace`]).
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] naming what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| config(format!("{url:?} is not a gs:// URL")))?;
        if !scheme.eq_ignore_ascii_case("gs") {
            return Err(config(format!(
                "{url:?}: scheme {scheme}:// is not a GCS store (gs://BUCKET/PREFIX)"
            )));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let bucket = segments
            .next()
            .ok_or_else(|| config(format!("{url:?} names no bucket (gs://BUCKET/PREFIX)")))?;
        let mut b = GcsStoreBuilder::new(bucket);
        let prefix: Vec<&str> = segments.collect();
        b = b.with_prefix(prefix.join("/"))?;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let v = percent_decode(v);
            match k {
                "endpoint" => b.endpoint = Some(v),
                "anonymous" => {
                    b.anonymous =
                        Some(parse_bool(&v).ok_or_else(|| {
                            config(format!("{url:?}: {k}={v} is not true or false"))
                        })?)
                }
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
                        "{url:?}: unknown parameter `{other}` (known: endpoint, anonymous, request_timeout, trim_grace)"
                    )));
                }
            }
        }
        b.validate_bucket()?;
        Ok(b)
    }

    fn validate_bucket(&self) -> Result<()> {
        let b = &self.bucket;
        let ok = (3..=222).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c))
            && b.as_bytes()[0].is_ascii_alphanumeric()
            && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
        if ok {
            Ok(())
        } else {
            Err(config(format!(
                "{b:?} is not a valid bucket name (3 to 222 of a-z, 0-9, `.`, `-`, `_`, starting and ending with a letter or digit)"
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

    /// Talk to this endpoint (e.g. `http://127.0.0.1:4443`) instead of Google's.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Send no credentials (emulators, public buckets) instead of Application Default
    /// Credentials.
    pub fn with_anonymous(mut self, on: bool) -> Self {
        self.anonymous = Some(on);
        self
    }

    /// Requests in flight for fan-out operations (find-missing, listing metadata; default 32).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Attempts after the first for a request that failed temporarily (default 3), with
    /// exponential backoff. Permanent errors are never retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Time allowed for each attempt of a small request (metadata, list, delete, entries;
    /// default 15 s). Blob transfers are bounded by the connect and read time-outs only.
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Time to open a connection (default 5 s), and the longest wait between two chunks of a
    /// download (default 60 s).
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// The eviction policy trims use (default: least recently used, by the access records
    /// clients leave; see `docs/remote-trim.md`).
    pub fn with_eviction_policy(mut self, policy: Arc<dyn EvictionPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// How old an unreferenced blob must be before a trim deletes it (default 1 hour).
    /// Writers reusing a blob older than half of it refresh the blob first.
    pub fn with_trim_grace(mut self, grace: Duration) -> Self {
        self.trim_grace = grace;
        self
    }

    /// Distinct hit entries buffered before an access record is written (default 10 000).
    pub fn with_access_batch(mut self, n: usize) -> Self {
        self.access_batch = n.max(1);
        self
    }

    /// Build the store, reading [`ENDPOINT_ENV`] and [`ANONYMOUS_ENV`] for what the builder
    /// left unset. Clients and credentials are made on first use.
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] for a bad bucket or endpoint.
    pub fn build(mut self) -> Result<GcsStore> {
        self.validate_bucket()?;
        if self.endpoint.is_none()
            && let Ok(e) = std::env::var(ENDPOINT_ENV)
            && !e.is_empty()
        {
            self.endpoint = Some(e);
        }
        if self.anonymous.is_none() {
            self.anonymous = std::env::var(ANONYMOUS_ENV)
                .ok()
                .and_then(|v| parse_bool(&v));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(config(format!(
                "GCS endpoint {e:?}: expected http://HOST:PORT or https://HOST"
            )));
        }
        GcsStore::from_builder(self)
    }

    /// The endpoint requests go to, without a trailing `/`.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
    }

    /// `gs://bucket/prefix` (and the endpoint when not Google's), for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("gs://{}/{} at {e}", self.bucket, self.prefix),
            None => format!("gs://{}/{}", self.bucket, self.prefix),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" | "" => Some(false),
        _ => None,
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
    fn gs_urls() {
        let b = GcsStoreBuilder::from_url("gs://my-bucket/team/cache/").unwrap();
        assert_eq!(
            (b.bucket.as_str(), b.prefix.as_str()),
            ("my-bucket", "team/cache/")
        );
        assert_eq!(b.endpoint(), DEFAULT_ENDPOINT);
        let b = GcsStoreBuilder::from_url(
            "GS://b_1/p?endpoint=http%3A%2F%2F127.0.0.1%3A4443&anonymous=1&trim_grace=60",
        )
        .unwrap();
        assert_eq!(b.endpoint(), "http://127.0.0.1:4443");
        assert_eq!(b.anonymous, Some(true));
        assert_eq!(b.trim_grace, Duration::from_secs(60));
        assert_eq!(GcsStoreBuilder::from_url("gs://bkt").unwrap().prefix, "");
        for bad in [
            "gs://",
            "gs://Bad",
            "gs://-bkt/x",
            "gs://bkt/a/../b",
            "s3://bkt/x",
            "gs://bkt?anonymous=maybe",
        ] {
            assert!(GcsStoreBuilder::from_url(bad).is_err(), "{bad}");
        }
        let err = GcsStoreBuilder::from_url("gs://bkt?nope=1").unwrap_err();
        assert!(err.to_string().contains("unknown parameter"), "{err}");
    }

    #[test]
    fn bad_endpoints_are_rejected_at_build() {
        let err = GcsStoreBuilder::new("bkt")
            .with_endpoint("127.0.0.1:1")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}

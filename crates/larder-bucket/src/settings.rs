//! What every object-store backend is configured with ([`BucketSettings`]), the builder
//! methods that set it ([`BucketBuilder`], one definition for S3, GCS and OpenDAL), the
//! parsing of store URLs and their query parameters ([`StoreUrl`], [`boolean`], [`number`]),
//! and reading the environment ([`env_var`], [`env_options`]) and keeping secrets out of
//! `Debug` output ([`Secret`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use larder_core::eviction::{EvictionPolicy, Lru};
use larder_core::{Error, Result};

use crate::{Bucket, BucketStore};

/// Bodies up to this size (entries, records, small blobs) are sent like other small requests
/// ([`BucketSettings::attempt_timeout`]).
pub const SMALL_BODY: usize = 1 << 20;

/// Settings every bucket store has, whatever its service.
#[derive(Debug, Clone)]
pub struct BucketSettings {
    /// Where the store lives in the bucket: empty, or segments ending with `/`.
    pub prefix: String,
    /// Blobs up to this size go up in one request; larger ones stream in parts of this size.
    pub part_size: usize,
    /// Requests a fan-out operation (find-missing, listing metadata, trim) keeps in flight.
    pub concurrency: usize,
    /// Attempts after the first for a request that failed temporarily.
    pub retries: u32,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// The longest wait for a response, or between two chunks of a download.
    pub read_timeout: Duration,
    /// Time allowed for each attempt of a small request (metadata, entries, deletes, lists).
    pub request_timeout: Duration,
    /// The eviction policy trims use.
    pub policy: Arc<dyn EvictionPolicy>,
    /// How old an unreferenced blob must be before a trim deletes it.
    pub trim_grace: Duration,
    /// Distinct hit entries buffered before an access record is written.
    pub access_batch: usize,
}

impl Default for BucketSettings {
    fn default() -> Self {
        BucketSettings {
            prefix: String::new(),
            part_size: 8 << 20,
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
}

impl BucketSettings {
    /// Apply one of the query parameters every bucket store understands: `request_timeout`
    /// and `trim_grace` (seconds), `concurrency`, `retries`, `access_batch`. `Ok(false)` when
    /// `key` is not one of them.
    ///
    /// # Errors
    /// A value that does not parse, naming `url` and the parameter.
    pub fn apply(&mut self, url: &str, key: &str, value: &str) -> Result<bool> {
        match key {
            "request_timeout" => self.request_timeout = seconds(url, key, value)?,
            "trim_grace" => self.trim_grace = seconds(url, key, value)?,
            "concurrency" => self.concurrency = number(url, key, value)?.max(1) as usize,
            "retries" => self.retries = number(url, key, value)?.min(u32::MAX as u64) as u32,
            "access_batch" => self.access_batch = number(url, key, value)?.max(1) as usize,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The bound on each attempt of a request that sends `len` bytes: the request time-out for
    /// a body up to [`SMALL_BODY`]; none for a larger one, which the connect and read
    /// time-outs bound.
    pub fn attempt_timeout(&self, len: usize) -> Option<Duration> {
        (len <= SMALL_BODY).then_some(self.request_timeout)
    }

    /// The shared parameters, for an "unknown parameter" message.
    pub const PARAMS: &'static str =
        "request_timeout, trim_grace, concurrency, retries, access_batch";

    /// Keep everything under `prefix` (`a/b` stores under `a/b/`).
    ///
    /// # Errors
    /// For a prefix with `.`/`..` or empty segments, or characters outside `[A-Za-z0-9._-/]`.
    pub fn set_prefix(&mut self, prefix: &str) -> Result<()> {
        let p = prefix.trim_matches('/');
        if p.is_empty() {
            self.prefix = String::new();
            return Ok(());
        }
        let bad_char = p
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(c)));
        let bad_segment = p.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if bad_char || bad_segment {
            return Err(Error::invalid(format!(
                "prefix {p:?}: use segments of [A-Za-z0-9._-] separated by `/`"
            )));
        }
        self.prefix = format!("{p}/");
        Ok(())
    }

    /// Blobs up to `bytes` go up in one request, larger ones in parts of `bytes`.
    ///
    /// # Errors
    /// Below `min`, the smallest part `service` takes.
    pub fn set_part_size(&mut self, bytes: u64, min: usize, service: &str) -> Result<()> {
        self.part_size = usize::try_from(bytes)
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "part size {bytes} is below {service}'s minimum of {min} bytes"
                ))
            })?;
        Ok(())
    }
}

/// The builder methods of every bucket store's builder, over its [`BucketSettings`].
pub trait BucketBuilder: Sized {
    /// The object primitives this builder configures.
    type Bucket: Bucket;

    /// The settings this builder fills in.
    fn settings_mut(&mut self) -> &mut BucketSettings;

    /// The configured primitives, with the environment read for what the builder left unset.
    /// Nothing is contacted yet.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what is wrong with the configuration.
    fn backend(self) -> Result<Self::Bucket>;

    /// Build the store over [`backend`](Self::backend).
    ///
    /// # Errors
    /// As [`backend`](Self::backend).
    fn build(self) -> Result<BucketStore<Self::Bucket>> {
        Ok(BucketStore::new(self.backend()?))
    }

    /// Keep everything under `prefix` in the bucket (`a/b` stores under `a/b/`).
    ///
    /// # Errors
    /// As [`BucketSettings::set_prefix`].
    fn with_prefix(mut self, prefix: impl AsRef<str>) -> Result<Self> {
        self.settings_mut().set_prefix(prefix.as_ref())?;
        Ok(self)
    }

    /// Requests in flight for fan-out operations (find-missing, listing metadata; default 32).
    fn with_concurrency(mut self, n: usize) -> Self {
        self.settings_mut().concurrency = n.max(1);
        self
    }

    /// Attempts after the first for a request that failed temporarily (default 3), with
    /// exponential backoff and jitter. Permanent errors are never retried.
    fn with_retries(mut self, retries: u32) -> Self {
        self.settings_mut().retries = retries;
        self
    }

    /// Time to open a connection (default 5 s), and the longest wait for a response or
    /// between two chunks of a download (default 60 s).
    fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        let s = self.settings_mut();
        s.connect_timeout = connect;
        s.read_timeout = read;
        self
    }

    /// Time allowed for each attempt of a small request (metadata, deletes, lists, entry reads
    /// and writes; default 15 s). Blob transfers are bounded by the connect and read time-outs.
    fn with_request_timeout(mut self, t: Duration) -> Self {
        self.settings_mut().request_timeout = t;
        self
    }

    /// The eviction policy trims use (default: least recently used, by the access records
    /// clients leave; see `docs/remote-trim.md`).
    fn with_eviction_policy(mut self, policy: Arc<dyn EvictionPolicy>) -> Self {
        self.settings_mut().policy = policy;
        self
    }

    /// How old an unreferenced blob must be before a trim deletes it (default 1 hour). A
    /// writer stores blobs before the entry naming them; this is the time it has to finish.
    /// Writers reusing a blob older than half of it refresh the blob first.
    fn with_trim_grace(mut self, grace: Duration) -> Self {
        self.settings_mut().trim_grace = grace;
        self
    }

    /// Distinct hit entries buffered before an access record is written (default 10 000);
    /// the rest is written by [`larder_core::Store::flush`].
    fn with_access_batch(mut self, n: usize) -> Self {
        self.settings_mut().access_batch = n.max(1);
        self
    }
}

/// A store URL taken apart: `scheme://seg/seg/…?key=value&…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl<'a> {
    /// The whole URL, for messages.
    pub url: &'a str,
    /// The scheme, lower-cased.
    pub scheme: String,
    /// The non-empty path segments (the first is the bucket or host).
    pub segments: Vec<&'a str>,
    /// The query parameters, values percent-decoded; a bare `key` reads as `key=true`.
    pub params: Vec<(&'a str, String)>,
}

impl<'a> StoreUrl<'a> {
    /// Take `url` apart, if its scheme is one of `schemes`; `expected` names the store and its
    /// URL forms for the error message (`"a GCS store (gs://BUCKET/PREFIX)"`).
    ///
    /// # Errors
    /// A URL without `://`, or with another scheme.
    pub fn parse(url: &'a str, expected: &str, schemes: &[&str]) -> Result<StoreUrl<'a>> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::invalid(format!("{url:?} is not {expected}")))?;
        let scheme = scheme.to_ascii_lowercase();
        if !schemes.contains(&scheme.as_str()) {
            return Err(Error::invalid(format!(
                "{url:?}: scheme {scheme}:// is not {expected}"
            )));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let params = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
                (k, percent_decode(v))
            })
            .collect();
        Ok(StoreUrl {
            url,
            scheme,
            segments: path.split('/').filter(|s| !s.is_empty()).collect(),
            params,
        })
    }

    /// The segment at `i`, or an error saying what is missing and what the URL looks like.
    ///
    /// # Errors
    /// When the URL has fewer segments.
    pub fn segment(&self, i: usize, what: &str, shape: &str) -> Result<&'a str> {
        self.segments
            .get(i)
            .copied()
            .ok_or_else(|| Error::invalid(format!("{:?} names no {what} ({shape})", self.url)))
    }

    /// `value` as a boolean ([`boolean`]).
    ///
    /// # Errors
    /// Anything else, naming the parameter.
    pub fn boolean(&self, key: &str, value: &str) -> Result<bool> {
        boolean(self.url, key, value)
    }

    /// `value` as a size (`16MiB`, `1048576`).
    ///
    /// # Errors
    /// Anything else, naming the parameter.
    pub fn size(&self, key: &str, value: &str) -> Result<u64> {
        number(self.url, key, value)
    }

    /// The error for a parameter the store does not know; `known` lists the store's own.
    pub fn unknown(&self, key: &str, known: &str) -> Error {
        Error::invalid(format!(
            "{:?}: unknown parameter `{key}` (known: {known}, {})",
            self.url,
            BucketSettings::PARAMS
        ))
    }
}

/// Check a bucket name: 3 to `max` of a-z, 0-9 and the characters of `punct`, and with `edges`,
/// starting and ending with a letter or digit.
///
/// # Errors
/// A name that breaks the rule, saying what the rule is.
pub fn check_bucket(name: &str, max: usize, punct: &str, edges: bool) -> Result<()> {
    let char_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || punct.contains(c);
    let edge_ok = |c: Option<char>| !edges || c.is_some_and(|c| c.is_ascii_alphanumeric());
    let (first, last) = (name.chars().next(), name.chars().last());
    if (3..=max).contains(&name.len())
        && name.chars().all(char_ok)
        && edge_ok(first)
        && edge_ok(last)
    {
        return Ok(());
    }
    let punct: Vec<String> = punct.chars().map(|c| format!(", `{c}`")).collect();
    let edges = if edges {
        ", starting and ending with a letter or digit"
    } else {
        ""
    };
    Err(Error::invalid(format!(
        "{name:?} is not a valid bucket name (3 to {max} of a-z, 0-9{}{edges})",
        punct.concat()
    )))
}

fn seconds(url: &str, key: &str, value: &str) -> Result<Duration> {
    value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| Error::invalid(format!("{url:?}: {key}={value} is not a number of seconds")))
}

/// `value` of the parameter `key` of `url` (or of whatever the message should name) as a
/// boolean: `true|1|yes|on` or `false|0|no|off`, in any case.
///
/// # Errors
/// Anything else, naming `url` and the parameter.
pub fn boolean(url: &str, key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid(format!(
            "{url:?}: {key}={value} is not true or false"
        ))),
    }
}

/// `value` of the parameter `key` of `url` as a size (`16MiB`, `1048576`).
///
/// # Errors
/// Anything else, naming `url` and the parameter.
pub fn number(url: &str, key: &str, value: &str) -> Result<u64> {
    larder_core::size::parse_size(value)
        .map_err(|_| Error::invalid(format!("{url:?}: {key}={value} is not a size")))
}

/// The environment variable `name`, when it is set and not empty.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The options `env` gives through variables `PREFIX<OPTION>`: each as (option in lower case,
/// value).
pub fn env_options<'e>(
    prefix: &'e str,
    env: impl IntoIterator<Item = (String, String)> + 'e,
) -> impl Iterator<Item = (String, String)> + 'e {
    env.into_iter().filter_map(move |(k, v)| {
        let option = k.strip_prefix(prefix).filter(|o| !o.is_empty())?;
        Some((option.to_ascii_lowercase(), v))
    })
}

/// What a backend makes on first use (clients and credentials: loading them may read files or
/// ask a server). `Debug` shows only whether it is made: clients hold credentials.
pub struct Lazy<T>(pub tokio::sync::OnceCell<T>);

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy(tokio::sync::OnceCell::new())
    }
}

impl<T> std::ops::Deref for Lazy<T> {
    type Target = tokio::sync::OnceCell<T>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<T> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.initialized() {
            "made"
        } else {
            "not made yet"
        })
    }
}

/// An endpoint URL over http or https (`service` names the store in the message).
///
/// # Errors
/// Any other.
pub fn check_endpoint(endpoint: Option<&str>, service: &str) -> Result<()> {
    match endpoint {
        Some(e) if !e.starts_with("http://") && !e.starts_with("https://") => Err(Error::invalid(
            format!("{service} endpoint {e:?}: expected http://HOST:PORT or https://HOST"),
        )),
        _ => Ok(()),
    }
}

/// A value `Debug` never shows (keys, passwords, options that may hold them).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Percent-encode a name for one URL path segment (everything but unreserved bytes).
pub fn percent_encode(name: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(name, KEEP).to_string()
}

/// Percent-decode a query value; a `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_apart() {
        let url = "S3://bkt/a//b/?x=1&flag&&e=http%3A%2F%2Fh%3A1";
        let u = StoreUrl::parse(url, "an S3 store", &["s3"]).unwrap();
        assert_eq!(u.scheme, "s3");
        assert_eq!(u.segments, vec!["bkt", "a", "b"]);
        assert_eq!(
            u.params,
            vec![
                ("x", "1".to_owned()),
                ("flag", "true".to_owned()),
                ("e", "http://h:1".to_owned())
            ]
        );
        assert!(StoreUrl::parse("nope", "an S3 store", &["s3"]).is_err());
        let e = StoreUrl::parse("gs://b", "an S3 store", &["s3"]).unwrap_err();
        assert!(
            e.to_string().contains("scheme gs:// is not an S3 store"),
            "{e}"
        );
        let err = u.segment(3, "thing", "s3://B/P").unwrap_err();
        assert!(err.to_string().contains("names no thing"), "{err}");
        assert!(u.boolean("x", "maybe").is_err());
        assert!(u.boolean("x", "ON").unwrap() && !u.boolean("x", "off").unwrap());
        assert!(
            u.unknown("zz", "a, b")
                .to_string()
                .contains("unknown parameter `zz`")
        );
    }

    #[test]
    fn shared_parameters_apply() {
        let mut s = BucketSettings::default();
        assert!(s.apply("u", "trim_grace", "60").unwrap());
        assert!(s.apply("u", "request_timeout", "2.5").unwrap());
        assert!(s.apply("u", "concurrency", "0").unwrap());
        assert!(!s.apply("u", "endpoint", "x").unwrap());
        assert!(s.apply("u", "trim_grace", "-1").is_err());
        assert_eq!(s.trim_grace, Duration::from_secs(60));
        assert_eq!(s.request_timeout, Duration::from_millis(2500));
        assert_eq!(s.concurrency, 1);
    }

    #[test]
    fn environment_options_and_secrets() {
        let env = [
            ("P_DB", "2"),
            ("P_", "x"),
            ("Q_DB", "3"),
            ("P_ACCOUNT_KEY", "k"),
        ];
        let env = env.map(|(k, v)| (k.to_owned(), v.to_owned()));
        let got: Vec<_> = env_options("P_", env).collect();
        let want = [("db", "2"), ("account_key", "k")];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "***");
        let lazy = Lazy(tokio::sync::OnceCell::new_with(Some("key")));
        assert_eq!(
            format!("{lazy:?} {:?}", Lazy::<()>::default()),
            "made not made yet"
        );
        assert!(check_endpoint(Some("127.0.0.1:1"), "GCS").is_err());
        assert!(
            check_endpoint(Some("https://h"), "GCS").is_ok() && check_endpoint(None, "").is_ok()
        );
        let mut s = BucketSettings::default();
        assert!(s.set_part_size(1 << 20, 5 << 20, "S3").is_err());
        s.set_part_size(16 << 20, 5 << 20, "S3").unwrap();
        assert_eq!(s.part_size, 16 << 20);
    }

    #[test]
    fn bucket_names_are_checked() {
        assert!(check_bucket("my-bucket.1", 63, ".-", false).is_ok());
        assert!(check_bucket("-b_", 222, ".-_", false).is_ok());
        for (bad, max) in [
            ("ab", 63),
            ("Bad", 63),
            ("a_b", 63),
            (&"a".repeat(64)[..], 63),
        ] {
            assert!(check_bucket(bad, max, ".-", false).is_err(), "{bad}");
        }
        let e = check_bucket("-bkt", 222, ".-_", true)
            .unwrap_err()
            .to_string();
        let rule =
            "(3 to 222 of a-z, 0-9, `.`, `-`, `_`, starting and ending with a letter or digit)";
        assert!(e.contains(rule), "{e}");
    }

    #[test]
    fn prefixes_are_checked() {
        let mut s = BucketSettings::default();
        s.set_prefix("/team/cache/").unwrap();
        assert_eq!(s.prefix, "team/cache/");
        s.set_prefix("").unwrap();
        assert_eq!(s.prefix, "");
        assert!(s.set_prefix("a/../b").is_err());
        assert!(s.set_prefix("a b").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("http%3A%2F%2Fh%3A1"), "http://h:1");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%+1"), "%+1");
        assert_eq!(
            percent_encode("p/blobs/ab-1.x y~"),
            "p%2Fblobs%2Fab-1.x%20y~"
        );
    }
}

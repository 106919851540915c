//! Building a [`GcsStore`]: bucket, endpoint and credentials, from a `gs://` URL and the
//! environment. What every bucket store is configured with (prefix, time-outs, grace, policy)
//! is [`BucketSettings`], set through [`BucketBuilder`].

use larder_bucket::{BucketBuilder, BucketSettings, BucketStore, StoreUrl};
use larder_core::{Error, Result};

use crate::GcsStore;
use crate::backend::GcsBucket;

/// Env var: the JSON API endpoint (default `https://storage.googleapis.com`), e.g.
/// `http://127.0.0.1:4443` for fake-gcs-server.
pub const ENDPOINT_ENV: &str = "LARDER_GCS_ENDPOINT";
/// Env var: `1`/`true` to send no credentials at all (emulators, public buckets) instead of
/// Application Default Credentials.
pub const ANONYMOUS_ENV: &str = "LARDER_GCS_ANONYMOUS";

/// The public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Builds a [`GcsStore`]. Start from [`GcsStoreBuilder::from_url`] or [`GcsStoreBuilder::new`];
/// the settings every bucket store shares are [`BucketBuilder`]'s methods.
#[derive(Debug, Clone)]
pub struct GcsStoreBuilder {
    pub(crate) settings: BucketSettings,
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) anonymous: Option<bool>,
}

impl BucketBuilder for GcsStoreBuilder {
    fn settings_mut(&mut self) -> &mut BucketSettings {
        &mut self.settings
    }
}

impl GcsStoreBuilder {
    /// A store in `bucket` with Application Default Credentials, no prefix.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            settings: BucketSettings::default(),
            bucket: bucket.into(),
            endpoint: None,
            anonymous: None,
        }
    }

    /// Parse `gs://BUCKET[/PREFIX][?PARAMS]`.
    ///
    /// Query parameters: `endpoint=URL`, `anonymous=true|false`, and those of every bucket
    /// store ([`BucketSettings::apply`]: `request_timeout=SECS`, `trim_grace=SECS`, …).
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] naming what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let u = StoreUrl::parse(url, "gs://")?;
        if u.scheme != "gs" {
            return Err(Error::invalid(format!(
                "{url:?}: scheme {}:// is not a GCS store (gs://BUCKET/PREFIX)",
                u.scheme
            )));
        }
        let mut b = GcsStoreBuilder::new(u.segment(0, "bucket", "gs://BUCKET/PREFIX")?)
            .with_prefix(u.segments[1..].join("/"))?;
        for (k, v) in &u.params {
            match *k {
                "endpoint" => b.endpoint = Some(v.clone()),
                "anonymous" => b.anonymous = Some(u.boolean(k, v)?),
                _ if b.settings.apply(url, k, v)? => {}
                other => return Err(u.unknown(other, "endpoint, anonymous")),
            }
        }
        b.check()?;
        Ok(b)
    }

    /// A bucket name of 3 to 222 of a-z, 0-9, `.`, `-`, `_`, starting and ending with a letter
    /// or digit; an endpoint over http or https.
    fn check(&self) -> Result<()> {
        let b = &self.bucket;
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let chars = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c);
        if !(3..=222).contains(&b.len())
            || !b.bytes().all(chars)
            || !edge(b.chars().next())
            || !edge(b.chars().last())
        {
            return Err(Error::invalid(format!(
                "{b:?} is not a valid bucket name (3 to 222 of a-z, 0-9, `.`, `-`, `_`, starting and ending with a letter or digit)"
            )));
        }
        match &self.endpoint {
            Some(e) if !e.starts_with("http://") && !e.starts_with("https://") => {
                Err(Error::invalid(format!(
                    "GCS endpoint {e:?}: expected http://HOST:PORT or https://HOST"
                )))
            }
            _ => Ok(()),
        }
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

    /// Build the store, reading [`ENDPOINT_ENV`] and [`ANONYMOUS_ENV`] for what the builder
    /// left unset. The HTTP client and credentials are made on first use.
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] for a bad bucket or endpoint.
    pub fn build(self) -> Result<GcsStore> {
        Ok(BucketStore::new(self.backend()?))
    }

    pub(crate) fn backend(mut self) -> Result<GcsBucket> {
        let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
        self.endpoint = self.endpoint.or_else(|| env(ENDPOINT_ENV));
        self.anonymous = self.anonymous.or_else(|| {
            let on = env(ANONYMOUS_ENV)?.to_ascii_lowercase();
            Some(matches!(on.as_str(), "true" | "1" | "yes"))
        });
        self.check()?;
        Ok(GcsBucket::new(self))
    }

    /// The endpoint requests go to, without a trailing `/`.
    pub(crate) fn endpoint(&self) -> &str {
        let e = self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        e.trim_end_matches('/')
    }

    /// `gs://bucket/prefix` (and the endpoint when not Google's), for messages.
    pub(crate) fn describe(&self) -> String {
        let at = self.endpoint.as_ref().map(|e| format!(" at {e}"));
        let (bucket, prefix) = (&self.bucket, &self.settings.prefix);
        format!("gs://{bucket}/{prefix}{}", at.unwrap_or_default())
    }
}

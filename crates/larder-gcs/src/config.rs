//! Building a [`GcsStore`](crate::GcsStore): bucket, endpoint and credentials, from a `gs://`
//! URL and the environment. What every bucket store is configured with (prefix, time-outs,
//! grace, policy) is [`BucketSettings`], set through [`BucketBuilder`].

use larder_bucket::settings::{check_bucket, check_endpoint, env_var};
use larder_bucket::{BucketBuilder, BucketSettings, StoreUrl};
use larder_core::Result;

use crate::backend::GcsBucket;

/// Env var: the JSON API endpoint (default `https://storage.googleapis.com`), e.g.
/// `http://127.0.0.1:4443` for fake-gcs-server.
pub const ENDPOINT_ENV: &str = "LARDER_GCS_ENDPOINT";
/// Env var: `1`/`true` to send no credentials at all (emulators, public buckets) instead of
/// Application Default Credentials.
pub const ANONYMOUS_ENV: &str = "LARDER_GCS_ANONYMOUS";

/// The public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Builds a [`GcsStore`](crate::GcsStore). Start from [`GcsStoreBuilder::from_url`] or
/// [`GcsStoreBuilder::new`]; the settings every bucket store shares, and `build`, are
/// [`BucketBuilder`]'s methods.
#[derive(Debug, Clone)]
pub struct GcsStoreBuilder {
    pub(crate) settings: BucketSettings,
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) anonymous: Option<bool>,
}

impl BucketBuilder for GcsStoreBuilder {
    type Bucket = GcsBucket;

    fn settings_mut(&mut self) -> &mut BucketSettings {
        &mut self.settings
    }

    /// Reads [`ENDPOINT_ENV`] and [`ANONYMOUS_ENV`] for what the builder left unset. The HTTP
    /// client and credentials are made on first use.
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] for a bad bucket or endpoint.
    fn backend(mut self) -> Result<GcsBucket> {
        self.endpoint = self.endpoint.or_else(|| env_var(ENDPOINT_ENV));
        self.anonymous = self.anonymous.or_else(|| {
            let on = env_var(ANONYMOUS_ENV)?.to_ascii_lowercase();
            Some(matches!(on.as_str(), "true" | "1" | "yes"))
        });
        self.check()?;
        Ok(GcsBucket::new(self))
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
        let u = StoreUrl::parse(url, "a GCS store (gs://BUCKET/PREFIX)", &["gs"])?;
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
        check_bucket(&self.bucket, 222, ".-_", true)?;
        check_endpoint(self.endpoint.as_deref(), "GCS")
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

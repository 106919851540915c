//! Building an [`S3Store`](crate::S3Store): bucket, endpoint, credentials and transfer sizes,
//! from a URL (`s3://bucket/prefix`, `minio://host:port/bucket/prefix`) and the environment.
//! What every bucket store is configured with (prefix, time-outs, grace, policy) is
//! [`BucketSettings`], set through [`BucketBuilder`].

use larder_bucket::settings::{check_bucket, env_var};
use larder_bucket::{BucketBuilder, BucketSettings, FromUrl, Secret, StoreUrl};
use larder_core::{Error, Result};

use crate::backend::S3Bucket;

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

const PARAMS: &str = "endpoint, region, path_style, tls, part_size, parts_in_flight, create_only";

/// Where credentials come from (`Debug` never shows the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// The AWS default chain (env, profile, web identity, ECS, IMDS).
    Chain,
    /// Static keys from [`ACCESS_KEY_ENV`]/[`SECRET_KEY_ENV`] or `AWS_*`, read at build time.
    FromEnv,
    /// Keys given to the builder.
    Static { access: String, secret: Secret },
}

/// Builds an [`S3Store`](crate::S3Store). Start from [`S3StoreBuilder::from_url`] or
/// [`S3StoreBuilder::new`]; the settings every bucket store shares, and `build`, are
/// [`BucketBuilder`]'s methods.
#[derive(Debug, Clone)]
pub struct S3StoreBuilder {
    pub(crate) settings: BucketSettings,
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) path_style: bool,
    pub(crate) region: Option<String>,
    pub(crate) credentials: Credentials,
    pub(crate) parts_in_flight: usize,
    pub(crate) create_only: bool,
}

impl BucketBuilder for S3StoreBuilder {
    type Bucket = S3Bucket;

    fn settings_mut(&mut self) -> &mut BucketSettings {
        &mut self.settings
    }

    /// Clients are made here when the keys are static; with the AWS chain they are made on
    /// first use (loading the chain is asynchronous).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad bucket, or a `minio://` store with no keys in the
    /// environment.
    fn backend(mut self) -> Result<S3Bucket> {
        self.validate_bucket()?;
        self.endpoint = self.endpoint.or_else(|| env_var(ENDPOINT_ENV));
        let regions = [REGION_ENV, "AWS_REGION", "AWS_DEFAULT_REGION"];
        self.region = self
            .region
            .or_else(|| regions.iter().find_map(|v| env_var(v)));
        if self.credentials == Credentials::FromEnv {
            let access = env_var(ACCESS_KEY_ENV).or_else(|| env_var("AWS_ACCESS_KEY_ID"));
            let secret = env_var(SECRET_KEY_ENV).or_else(|| env_var("AWS_SECRET_ACCESS_KEY"));
            let (Some(access), Some(secret)) = (access, secret) else {
                return Err(Error::invalid(format!(
                    "S3 store {}: no credentials: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    self.describe()
                )));
            };
            let secret = Secret(secret);
            self.credentials = Credentials::Static { access, secret };
        }
        Ok(S3Bucket::new(self))
    }
}

impl FromUrl for S3Bucket {
    /// As [`S3StoreBuilder::from_url`], with the environment for what the URL leaves unset.
    fn from_url(url: &str) -> Result<S3Bucket> {
        S3StoreBuilder::from_url(url)?.backend()
    }
}

impl S3StoreBuilder {
    /// A store in `bucket` on AWS, with the default credential chain, no prefix.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            settings: BucketSettings::default(),
            bucket: bucket.into(),
            endpoint: None,
            path_style: false,
            region: None,
            credentials: Credentials::Chain,
            parts_in_flight: 4,
            create_only: true,
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
    /// `create_only=false` (for services that reject `If-None-Match: *`), and those of every
    /// bucket store ([`BucketSettings::apply`]).
    ///
    /// # Errors
    /// [`larder_core::Error::InvalidInput`] naming what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let u = StoreUrl::parse(url, "an S3 store (s3:// or minio://)", &["s3", "minio"])?;
        let (mut b, first) = if u.scheme == "s3" {
            (Self::new(u.segment(0, "bucket", "s3://BUCKET/PREFIX")?), 1)
        } else {
            let shape = "minio://HOST:PORT/BUCKET/PREFIX";
            let host = u.segment(0, "server", shape)?;
            let mut b = Self::new(u.segment(1, "bucket", shape)?);
            b.endpoint = Some(format!("http://{host}"));
            (b.path_style, b.credentials) = (true, Credentials::FromEnv);
            (b, 2)
        };
        b = b.with_prefix(u.segments[first..].join("/"))?;
        for (k, v) in &u.params {
            match *k {
                "endpoint" => b.endpoint = Some(v.clone()),
                "region" => b.region = Some(v.clone()),
                "path_style" => b.path_style = u.boolean(k, v)?,
                "tls" if u.boolean(k, v)? => {
                    b.endpoint = b.endpoint.map(|e| e.replacen("http://", "https://", 1));
                }
                "tls" => {}
                "part_size" => b = b.with_part_size(u.size(k, v)? as usize)?,
                "parts_in_flight" => b.parts_in_flight = (u.size(k, v)? as usize).max(1),
                "create_only" => b.create_only = u.boolean(k, v)?,
                _ if b.settings.apply(url, k, v)? => {}
                other => return Err(u.unknown(other, PARAMS)),
            }
        }
        b.validate_bucket()?;
        Ok(b)
    }

    /// A bucket name of 3 to 63 of a-z, 0-9, `.`, `-`.
    fn validate_bucket(&self) -> Result<()> {
        check_bucket(&self.bucket, 63, ".-", false)
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
        access: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        let (access, secret) = (access.into(), Secret(secret.into()));
        self.credentials = Credentials::Static { access, secret };
        self
    }

    /// Multipart part size (default 8 MiB; at least 5 MiB). Blobs up to this size go up in
    /// one request. Memory for an upload is about `part_size * (parts_in_flight + 1)`.
    ///
    /// # Errors
    /// Below [`MIN_PART_SIZE`].
    pub fn with_part_size(mut self, bytes: usize) -> Result<Self> {
        (self.settings).set_part_size(bytes as u64, MIN_PART_SIZE, "S3")?;
        Ok(self)
    }

    /// Parts uploaded at once per blob (default 4).
    pub fn with_parts_in_flight(mut self, n: usize) -> Self {
        self.parts_in_flight = n.max(1);
        self
    }

    /// Whether create-only writes send `If-None-Match: *` (default on; S3, MinIO and SeaweedFS
    /// honour it). Off: a create-only write checks first, then writes (a small race).
    pub fn with_create_only(mut self, on: bool) -> Self {
        self.create_only = on;
        self
    }

    /// `s3://bucket/prefix` or `endpoint/bucket/prefix`, for messages.
    pub(crate) fn describe(&self) -> String {
        let prefix = &self.settings.prefix;
        match &self.endpoint {
            Some(e) => format!("{}/{}/{prefix}", e.trim_end_matches('/'), self.bucket),
            None => format!("s3://{}/{prefix}", self.bucket),
        }
    }
}

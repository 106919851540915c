//! [`GcsBucket`]: the object primitives over the Cloud Storage JSON API that
//! [`larder_bucket::BucketStore`] turns into a larder store. The generation is the version.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use larder_bucket::error::{RequestError, body, found, retrying, stalled, timed_chunks, within};
use larder_bucket::settings::percent_encode as encode;
use larder_bucket::upload::multipart_related;
use larder_bucket::{Bucket, BucketBuilder, BucketSettings, FromUrl, Lazy, Listed, PutObject};
use larder_core::{ByteStream, PutOutcome, Result};
use reqwest_gcs::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::config::GcsStoreBuilder;
use crate::core::{GcsError, STORE, listed, page, resource, send};

/// A Cloud Storage bucket under a prefix. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GcsBucket(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cfg: GcsStoreBuilder,
    /// The HTTP client and the credentials.
    client: Lazy<(reqwest_gcs::Client, Credentials)>,
}

impl fmt::Display for GcsBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcs store {}", self.0.cfg.describe())
    }
}

impl FromUrl for GcsBucket {
    /// As [`GcsStoreBuilder::from_url`], with the environment for what the URL leaves unset.
    fn from_url(url: &str) -> Result<GcsBucket> {
        GcsStoreBuilder::from_url(url)?.backend()
    }
}

fn connect(cfg: &GcsStoreBuilder) -> Result<(reqwest_gcs::Client, Credentials), GcsError> {
    // The crates are built without a default TLS provider (no aws-lc): use ring, as the S3
    // client does. Another part of the process may have installed one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let creds = match cfg.anonymous {
        Some(true) => credentials::anonymous::Builder::new().build(),
        _ => credentials::Builder::default()
            .build()
            .map_err(|e| GcsError::Auth(e.to_string()))?,
    };
    let http = reqwest_gcs::Client::builder()
        .connect_timeout(cfg.settings.connect_timeout)
        .read_timeout(cfg.settings.read_timeout);
    Ok((http.build()?, creds))
}

impl GcsBucket {
    pub(crate) fn new(cfg: GcsStoreBuilder) -> GcsBucket {
        GcsBucket(Arc::new(Inner {
            cfg,
            client: Lazy::default(),
        }))
    }

    /// A request to `path` under the endpoint, with the credentials' headers.
    async fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, GcsError> {
        let cfg = &self.0.cfg;
        let (http, creds) = (self.0.client)
            .get_or_try_init(|| async { connect(cfg) })
            .await?;
        let req = http.request(method, format!("{}{path}", cfg.endpoint()));
        match creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(req.headers(data)),
            Ok(CacheableResource::NotModified) => Ok(req),
            Err(e) => Err(GcsError::Auth(e.to_string())),
        }
    }

    /// `/storage/v1/b/BUCKET/o` (the bucket's objects), then `/NAME` for a non-empty `key`.
    fn objects(&self, key: &str) -> String {
        let name = (!key.is_empty()).then(|| format!("/{}", encode(key)));
        format!(
            "/storage/v1/b/{}/o{}",
            self.0.cfg.bucket,
            name.unwrap_or_default()
        )
    }

    /// A request with a small JSON answer (`Null` when empty), retried on temporary errors,
    /// each attempt bounded by the request time-out.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, GcsError> {
        let s = self.settings();
        retrying(s.retries, s.request_timeout, || async {
            let req = self.request(method.clone(), path).await?.query(query);
            let bytes = send(req).await?.bytes().await?;
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&bytes).map_err(|e| GcsError::Decode(e.to_string()))
        })
        .await
    }

    /// Start downloading an object (each attempt bounded by `timeout` until the answer starts):
    /// its size and the response, `None` when it does not exist.
    async fn open(&self, key: &str, timeout: Duration) -> Result<Option<(u64, Response)>> {
        let got = retrying(self.settings().retries, timeout, || async {
            let req = self.request(Method::GET, &self.objects(key)).await?;
            send(req.query(&[("alt", "media")])).await
        })
        .await;
        let Some(resp) = found(got, &format!("reading {key}"))? else {
            return Ok(None);
        };
        // A server that states no length (the emulator, at times) reads as 0: ask the metadata.
        match resp.content_length().filter(|n| *n > 0) {
            Some(size) => Ok(Some((size, resp))),
            None => Ok(self.head(key).await?.map(|o| (o.size, resp))),
        }
    }

    /// One multipart upload: the object's resource with its custom `metadata`, then the body.
    /// With `create`, only if the name is free (`ifGenerationMatch=0`).
    async fn upload(
        &self,
        key: &str,
        metadata: &[(&str, String)],
        body: (u64, ByteStream),
        create: bool,
    ) -> Result<(), GcsError> {
        let (body, content_type, len) = multipart_related(&resource(key, metadata), body);
        let body = reqwest_gcs::Body::wrap_stream(body);
        let path = format!("/upload{}", self.objects(""));
        let query = [("uploadType", "multipart"), ("ifGenerationMatch", "0")];
        let req = self.request(Method::POST, &path).await?;
        let req = req.query(&query[..if create { 2 } else { 1 }]);
        let req = req
            .header("content-type", content_type)
            .header("content-length", len);
        send(req.body(body)).await.map(drop)
    }
}

#[async_trait]
impl Bucket for GcsBucket {
    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        let what = format!("checking {key}");
        let got = self.call(Method::GET, &self.objects(key), &[]).await;
        let Some(v) = found(got, &what)? else {
            return Ok(None);
        };
        let decoded = listed(&v).ok_or_else(|| GcsError::Decode("no object name".into()));
        decoded.map(Some).map_err(|e| e.into_error(&what))
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let timeout = self.settings().request_timeout;
        let Some((size, resp)) = self.open(key, timeout).await? else {
            return Ok(None);
        };
        within(key, size, limit)?;
        let what = format!("reading {key}");
        match tokio::time::timeout(timeout, resp.bytes()).await {
            Ok(got) => got.map(Some).map_err(|e| body(STORE, &what, e)),
            Err(_) => Err(stalled(STORE, &what, timeout)),
        }
    }

    /// Each chunk must arrive within the read time-out.
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let timeout = self.settings().read_timeout;
        let Some((size, resp)) = self.open(key, timeout).await? else {
            return Ok(None);
        };
        let chunks = timed_chunks(
            STORE,
            format!("reading {key}"),
            timeout,
            resp.bytes_stream(),
        );
        Ok(Some((size, chunks)))
    }

    /// A multipart upload, retried on temporary errors; create-only with `ifGenerationMatch=0`.
    async fn put_object(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        let create = how.create;
        let s = self.settings();
        let timeout = s.attempt_timeout(body.len()).unwrap_or(Duration::MAX);
        let got = retrying(s.retries, timeout, || {
            let data = futures::stream::iter([Ok(body.clone())]).boxed();
            self.upload(key, how.metadata, (body.len() as u64, data), create)
        })
        .await;
        match got {
            Ok(()) => Ok(PutOutcome::Written),
            // 412: the name is taken (create-only).
            Err(e) if create && e.status() == Some(412) => Ok(PutOutcome::Exists),
            Err(e) => Err(e.into_error(&format!("storing {key}"))),
        }
    }

    /// One multipart request whose body is the caller's stream: memory stays at one chunk, and
    /// a stream that fails cuts the request short, so nothing is stored. Not retried: the
    /// stream cannot be replayed (the error says whether it was temporary).
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<()> {
        let sent = self.upload(key, &[], (size, body), false).await;
        sent.map_err(|e| e.into_error(&format!("uploading {key}")))
    }

    /// A copy onto itself (`copyTo`): a new update time, the same bytes.
    async fn refresh(&self, key: &str) -> Result<bool> {
        let (bucket, name) = (&self.0.cfg.bucket, encode(key));
        let path = format!("{}/copyTo/b/{bucket}/o/{name}", self.objects(key));
        let copied = self.call(Method::POST, &path, &[]).await;
        copied
            .map(|_| true)
            .map_err(|e| e.into_error(&format!("refreshing {key}")))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let got = self.call(Method::DELETE, &self.objects(key), &[]).await;
        found(got, &format!("deleting {key}")).map(drop)
    }

    /// Conditional on the generation (`ifGenerationMatch`): Cloud Storage refuses it if the
    /// entry was re-put since the metadata read (which also covers emulators that ignore the
    /// condition).
    async fn delete_at(&self, key: &str, version: &str) -> Result<bool> {
        let query = [("ifGenerationMatch", version)];
        match self.call(Method::DELETE, &self.objects(key), &query).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.status(), Some(404 | 412)) => Ok(false),
            Err(e) => Err(e.into_error(&format!("deleting {key}"))),
        }
    }

    /// Listings carry each object's custom metadata, so entries' sizes need no request.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        let (gcs, prefix) = (self.clone(), prefix.to_owned());
        larder_bucket::store::paged(move |token: Option<String>| {
            let (gcs, prefix) = (gcs.clone(), prefix.clone());
            async move {
                let mut query = vec![("prefix", prefix.as_str())];
                query.extend(token.as_deref().map(|t| ("pageToken", t)));
                let got = gcs.call(Method::GET, &gcs.objects(""), &query).await;
                got.map(|v| page(&v))
                    .map_err(|e| e.into_error(&format!("listing {prefix}")))
            }
        })
    }

    fn settings(&self) -> &BucketSettings {
        &self.0.cfg.settings
    }
}

//! [`S3Bucket`]: the object primitives over the S3 API that [`larder_bucket::BucketStore`]
//! turns into a larder store. The ETag is the version.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, retry, timeout,
};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::{ByteStream as S3Body, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, Object};
use bytes::Bytes;
use futures::stream::BoxStream;
use larder_bucket::error::{body, found_by, store_error, timed_chunks, within};
use larder_bucket::upload::send_parts;
use larder_bucket::{Bucket, BucketSettings, Features, Lazy, Listed, PutObject};
use larder_core::{ByteStream, PutOutcome, Result};
use tokio::sync::OnceCell;

use crate::config::{Credentials, S3StoreBuilder};
use crate::error::{STORE, sdk, status};

/// An S3 bucket (AWS, MinIO, SeaweedFS, any S3-compatible service) under a prefix. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct S3Bucket(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    cfg: S3StoreBuilder,
    clients: Lazy<Clients>,
}

impl fmt::Display for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3 store {}", self.0.cfg.describe())
    }
}

/// The HTTP client: hyper 1 on rustls with ring (no aws-lc build), https and http alike.
fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let tls = Provider::Rustls(CryptoMode::Ring);
    let http = aws_smithy_http_client::Builder::new();
    http.tls_provider(tls).build_https()
}

/// Two clients on the same settings: `small` also bounds each attempt by the request time-out
/// (HEAD, DELETE, LIST, entries); `big` moves blobs, bounded by connect and read time-outs only.
/// (Per-request config overrides would do the same at a cost on every request.)
struct Clients {
    big: Client,
    small: Client,
}

impl Clients {
    /// On `base`: the AWS shared configuration (`has_region`: it names one), or an empty one.
    fn new(cfg: &S3StoreBuilder, base: aws_sdk_s3::config::Builder, has_region: bool) -> Self {
        let s = &cfg.settings;
        let retries = retry::RetryConfig::standard().with_max_attempts(s.retries + 1);
        let mut b = base
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client())
            .force_path_style(cfg.path_style)
            .retry_config(retries)
            // Blobs are verified end to end with BLAKE3; CRC32 on every byte would only cost CPU.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        if let Some(r) = &cfg.region {
            b = b.region(Region::new(r.clone()));
        } else if cfg.endpoint.is_some() || !has_region {
            // S3-compatible servers mostly ignore the region, but signing needs one.
            b = b.region(Region::new("us-east-1"));
        }
        if let Credentials::Static { access, secret } = &cfg.credentials {
            let creds =
                aws_sdk_s3::config::Credentials::new(access, &secret.0, None, None, "larder");
            b = b.credentials_provider(creds);
        }
        let timeouts = |attempt: Option<Duration>| {
            let mut t = timeout::TimeoutConfig::builder().connect_timeout(s.connect_timeout);
            t.set_operation_attempt_timeout(attempt);
            t.read_timeout(s.read_timeout).build()
        };
        Clients {
            big: Client::from_conf(b.clone().timeout_config(timeouts(None)).build()),
            small: Client::from_conf(b.timeout_config(timeouts(Some(s.request_timeout))).build()),
        }
    }
}

/// What a listing or a HEAD says of an object.
fn listed(key: &str, size: Option<i64>, time: Option<&DateTime>, etag: Option<&str>) -> Listed {
    Listed {
        key: key.to_owned(),
        size: size.unwrap_or(0).max(0) as u64,
        modified_ms: time.and_then(|t| t.to_millis().ok()).unwrap_or(0).max(0) as u64,
        version: etag.unwrap_or_default().to_owned(),
        metadata: Vec::new(),
    }
}

impl S3Bucket {
    pub(crate) fn new(cfg: S3StoreBuilder) -> S3Bucket {
        let clients = match cfg.credentials {
            Credentials::Static { .. } => {
                let base = aws_sdk_s3::config::Builder::new();
                Lazy(OnceCell::new_with(Some(Clients::new(&cfg, base, false))))
            }
            _ => Lazy::default(),
        };
        S3Bucket(Arc::new(Inner { cfg, clients }))
    }

    /// The clients, made on first use when they need the AWS credential chain.
    async fn clients(&self) -> &Clients {
        let chain = || async {
            let shared = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
            let shared = shared.load().await;
            let base = aws_sdk_s3::config::Builder::from(&shared);
            Clients::new(&self.0.cfg, base, shared.region().is_some())
        };
        self.0.clients.get_or_init(chain).await
    }

    fn bucket(&self) -> &str {
        &self.0.cfg.bucket
    }

    /// GET an object with the small or the big client: its size and the answer, `None` when
    /// it does not exist.
    async fn get_object(&self, key: &str, big: bool) -> Result<Option<(u64, GetObjectOutput)>> {
        let clients = self.clients().await;
        let client = if big { &clients.big } else { &clients.small };
        let req = client.get_object().bucket(self.bucket()).key(key);
        let got = found_by(req.send().await, status, |e| {
            sdk(&format!("reading {key}"), e)
        })?;
        Ok(got.map(|out| (out.content_length().unwrap_or(0).max(0) as u64, out)))
    }
}

#[async_trait]
impl Bucket for S3Bucket {
    fn settings(&self) -> &BucketSettings {
        &self.0.cfg.settings
    }

    fn features(&self) -> Features {
        let create_only = self.0.cfg.create_only;
        Features {
            create_only,
            ..Features::default()
        }
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        let (s3, prefix) = (self.clone(), prefix.to_owned());
        larder_bucket::store::paged(move |token| {
            let (s3, prefix) = (s3.clone(), prefix.clone());
            async move {
                let req = s3.clients().await.small.list_objects_v2();
                let req = req.bucket(s3.bucket()).prefix(&prefix);
                let sent = req.set_continuation_token(token).send().await;
                let out = sent.map_err(|e| sdk(&format!("listing {prefix}"), e))?;
                let item =
                    |o: &Object| Some(listed(o.key()?, o.size(), o.last_modified(), o.e_tag()));
                let items = out.contents().iter().filter_map(item).collect();
                let truncated = out.is_truncated() == Some(true);
                let next = out.next_continuation_token().filter(|_| truncated);
                Ok((items, next.map(str::to_owned)))
            }
        })
    }

    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        let client = &self.clients().await.small;
        let req = client.head_object().bucket(self.bucket()).key(key);
        let checking = |e| sdk(&format!("checking {key}"), e);
        let Some(out) = found_by(req.send().await, status, checking)? else {
            return Ok(None);
        };
        let mut o = listed(key, out.content_length(), out.last_modified(), out.e_tag());
        let metadata = out.metadata().into_iter().flatten();
        o.metadata = metadata.map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Some(o))
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let Some((size, out)) = self.get_object(key, false).await? else {
            return Ok(None);
        };
        within(key, size, limit)?;
        let bytes = out.body.collect().await;
        let bytes = bytes.map_err(|e| body(STORE, &format!("reading {key}"), e))?;
        Ok(Some(bytes.into_bytes()))
    }

    /// Each chunk must arrive within the read time-out (a stalled body is temporary).
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let Some((size, out)) = self.get_object(key, true).await? else {
            return Ok(None);
        };
        // The SDK's body is no `Stream`: its chunks, one `next` at a time.
        let chunks = futures::stream::unfold(out.body, |mut b| async move {
            b.next().await.map(|chunk| (chunk, b))
        });
        let (what, timeout) = (format!("reading {key}"), self.settings().read_timeout);
        Ok(Some((size, timed_chunks(STORE, what, timeout, chunks))))
    }

    async fn put_object(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        let (clients, small) = (
            self.clients().await,
            self.settings().attempt_timeout(body.len()),
        );
        let client = if small.is_some() {
            &clients.small
        } else {
            &clients.big
        };
        let req = client.put_object().bucket(self.bucket()).key(key);
        let req = req.content_length(body.len() as i64);
        let mut req = req.body(S3Body::from(body));
        for (k, v) in how.metadata {
            req = req.metadata(*k, v);
        }
        if how.create {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            // 412: it exists. 409: a concurrent conditional write of the same key is in
            // progress, so it will exist.
            Err(e) if how.create && matches!(status(&e), Some(412 | 409)) => Ok(PutOutcome::Exists),
            Err(e) => Err(sdk(&format!("storing {key}"), e)),
        }
    }

    /// A multipart upload: parts of the part size, a few in flight; completed only after the
    /// body ended cleanly, aborted otherwise.
    async fn put_stream(&self, key: &str, _size: u64, body: ByteStream) -> Result<()> {
        let (client, bucket) = (&self.clients().await.big, self.bucket());
        let what = format!("uploading {key}");
        let create = client.create_multipart_upload().bucket(bucket).key(key);
        let created = create.send().await.map_err(|e| sdk(&what, e))?;
        let Some(id) = created.upload_id() else {
            return Err(store_error(STORE, &what, "no upload id", false, None));
        };
        let (part_size, in_flight) = (self.settings().part_size, self.0.cfg.parts_in_flight);
        let uploaded = send_parts(body, part_size, in_flight, |i, part| {
            let n = i as i32 + 1;
            let req = client.upload_part().bucket(bucket).key(key);
            let req = req
                .upload_id(id)
                .part_number(n)
                .content_length(part.len() as i64);
            let sent = req.body(S3Body::from(part)).send();
            async move {
                let out = sent.await;
                let out = out.map_err(|e| sdk(&format!("uploading part {n} of {key}"), e))?;
                let done = CompletedPart::builder().part_number(n);
                Ok(done.set_e_tag(out.e_tag().map(str::to_owned)).build())
            }
        });
        let done = match uploaded.await {
            Ok(parts) => {
                let all = CompletedMultipartUpload::builder().set_parts(Some(parts));
                let req = client.complete_multipart_upload().bucket(bucket).key(key);
                let sent = req.upload_id(id).multipart_upload(all.build()).send().await;
                let what = format!("completing the upload of {key}");
                sent.map(drop).map_err(|e| sdk(&what, e))
            }
            Err(e) => Err(e),
        };
        if done.is_err() {
            // Best effort: a failure is only logged; lifecycle rules for incomplete uploads
            // are the backstop.
            let abort = client.abort_multipart_upload().bucket(bucket).key(key);
            if let Err(e) = abort.upload_id(id).send().await {
                let e = sdk("aborting", e);
                tracing::warn!("{self}: cannot abort the upload of {key}: {e}");
            }
        }
        done
    }

    /// A copy onto itself with new metadata: a new modification time, the same bytes.
    async fn refresh(&self, key: &str) -> Result<bool> {
        let client = &self.clients().await.big;
        let copy = client.copy_object().bucket(self.bucket()).key(key);
        let copy = copy.copy_source(format!("{}/{key}", self.bucket()));
        let copy = copy.metadata_directive(MetadataDirective::Replace);
        copy.send()
            .await
            .map(|_| true)
            .map_err(|e| sdk("refreshing", e))
    }

    /// S3 deletes are idempotent.
    async fn delete(&self, key: &str) -> Result<()> {
        let client = &self.clients().await.small;
        let req = client.delete_object().bucket(self.bucket()).key(key);
        let what = format!("deleting {key}");
        req.send().await.map(drop).map_err(|e| sdk(&what, e))
    }
}

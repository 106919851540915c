//! [`S3Bucket`]: the object primitives over the S3 API that [`larder_bucket::BucketStore`]
//! turns into a larder store.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, retry, timeout,
};
use aws_sdk_s3::primitives::{ByteStream as S3Body, DateTime};
use aws_sdk_s3::types::MetadataDirective;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use larder_bucket::error::{body, stalled};
use larder_bucket::{Bucket, BucketSettings, Listed};
use larder_core::{ByteStream, Error, PutOutcome, Result};
use tokio::sync::OnceCell;

use crate::config::{Credentials, S3StoreBuilder};
use crate::error::{STORE, sdk, status};

/// An S3 bucket (AWS, MinIO, SeaweedFS, any S3-compatible service) under a prefix. Cheap to
/// clone.
#[derive(Clone)]
pub struct S3Bucket(Arc<Inner>);

struct Inner {
    cfg: S3StoreBuilder,
    clients: OnceCell<Clients>,
    name: String,
}

impl fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Bucket")
            .field("cfg", &self.0.cfg)
            .finish()
    }
}

impl fmt::Display for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3 store {}", self.0.name)
    }
}

/// The HTTP client: hyper 1 on rustls with ring (no aws-lc build), https and http alike.
fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Two clients on the same settings: `small` also bounds each attempt by the request time-out
/// (HEAD, DELETE, LIST, entries); `big` moves blobs, bounded by connect and read time-outs only.
/// (Per-request config overrides would do the same at a cost on every request.)
struct Clients {
    big: Client,
    small: Client,
}

impl Clients {
    fn new(cfg: &S3StoreBuilder, base: aws_sdk_s3::config::Builder, has_region: bool) -> Self {
        let attempt = Some(cfg.settings.request_timeout);
        Clients {
            big: Client::from_conf(s3_config(cfg, base.clone(), has_region, None)),
            small: Client::from_conf(s3_config(cfg, base, has_region, attempt)),
        }
    }
}

fn s3_config(
    cfg: &S3StoreBuilder,
    base: aws_sdk_s3::config::Builder,
    has_region: bool,
    attempt_timeout: Option<std::time::Duration>,
) -> aws_sdk_s3::Config {
    let s = &cfg.settings;
    let mut t = timeout::TimeoutConfig::builder()
        .connect_timeout(s.connect_timeout)
        .read_timeout(s.read_timeout);
    t.set_operation_attempt_timeout(attempt_timeout);
    let mut b = base
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .force_path_style(cfg.path_style)
        .retry_config(retry::RetryConfig::standard().with_max_attempts(s.retries + 1))
        .timeout_config(t.build())
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
        let creds = aws_sdk_s3::config::Credentials::new(
            access.clone(),
            secret.clone(),
            None,
            None,
            "larder",
        );
        b = b.credentials_provider(creds);
    }
    b.build()
}

fn millis(t: Option<&DateTime>) -> u64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0).max(0) as u64
}

impl S3Bucket {
    pub(crate) fn new(cfg: S3StoreBuilder) -> S3Bucket {
        let clients = match cfg.credentials {
            Credentials::Static { .. } => OnceCell::new_with(Some(Clients::new(
                &cfg,
                aws_sdk_s3::config::Builder::new(),
                false,
            ))),
            _ => OnceCell::new(),
        };
        let name = cfg.describe();
        S3Bucket(Arc::new(Inner { cfg, clients, name }))
    }

    /// The clients, made on first use when they need the AWS credential chain.
    async fn clients(&self) -> Result<&Clients> {
        self.0
            .clients
            .get_or_try_init(|| async {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client())
                    .load()
                    .await;
                let base = aws_sdk_s3::config::Builder::from(&shared);
                let has_region = shared.region().is_some();
                Ok::<_, Error>(Clients::new(&self.0.cfg, base, has_region))
            })
            .await
    }

    fn bucket(&self) -> &str {
        &self.0.cfg.bucket
    }

    /// GET an object with the small or the big client: `None` when it does not exist.
    async fn get_object(
        &self,
        key: &str,
        big: bool,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>> {
        let clients = self.clients().await?;
        let client = if big { &clients.big } else { &clients.small };
        match client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk(&format!("reading {key}"), e)),
        }
    }

    /// One page of objects under `prefix`, after `token`.
    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let out = (self.clients().await?.small)
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| sdk(&format!("listing {prefix}"), e))?;
        let items = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified_ms: millis(o.last_modified()),
                    version: o.e_tag().unwrap_or_default().to_owned(),
                    metadata: Vec::new(),
                })
            })
            .collect();
        let next = match out.is_truncated() {
            Some(true) => out.next_continuation_token().map(str::to_owned),
            _ => None,
        };
        Ok((items, next))
    }

    /// Upload `body` as a multipart upload: parts of the part size, a few in flight; completed
    /// only after the body ended cleanly, aborted otherwise.
    async fn multipart(&self, key: &str, body: ByteStream) -> Result<()> {
        let client = &self.clients().await?.big;
        let what = format!("uploading {key}");
        let created = (client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key))
        .send()
        .await
        .map_err(|e| sdk(&what, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            let e = larder_bucket::error::store_error(STORE, &what, "no upload id", false, None);
            return Err(e);
        };
        let parts = larder_bucket::upload::parts(body, self.0.cfg.settings.part_size)
            .enumerate()
            .map(|(i, part)| {
                let n = i as i32 + 1;
                let req = client
                    .upload_part()
                    .bucket(self.bucket())
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(n);
                let what = format!("uploading part {n} of {key}");
                async move {
                    let part = part?;
                    let req = req
                        .content_length(part.len() as i64)
                        .body(S3Body::from(part));
                    let out = req.send().await.map_err(|e| sdk(&what, e))?;
                    Ok::<_, Error>(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(out.e_tag().map(str::to_owned))
                            .build(),
                    )
                }
            })
            .buffered(self.0.cfg.parts_in_flight);
        let uploaded: Result<Vec<_>> = futures::TryStreamExt::try_collect(parts).await;
        let done = match uploaded {
            Ok(parts) => {
                let all = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build();
                (client
                    .complete_multipart_upload()
                    .bucket(self.bucket())
                    .key(key))
                .upload_id(&upload_id)
                .multipart_upload(all)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(&format!("completing the upload of {key}"), e))
            }
            Err(e) => Err(e),
        };
        if done.is_err() {
            // Best effort: a failure is only logged; lifecycle rules for incomplete uploads
            // are the backstop.
            let abort = client
                .abort_multipart_upload()
                .bucket(self.bucket())
                .key(key);
            if let Err(e) = abort.upload_id(&upload_id).send().await {
                tracing::warn!(
                    "{self}: cannot abort the upload of {key}: {}",
                    sdk("aborting", e)
                );
            }
        }
        done
    }
}

#[async_trait]
impl Bucket for S3Bucket {
    fn settings(&self) -> &BucketSettings {
        &self.0.cfg.settings
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>> {
        let (bucket, prefix) = (self.clone(), prefix.to_owned());
        larder_bucket::store::paged(move |token| {
            let (bucket, prefix) = (bucket.clone(), prefix.clone());
            async move { bucket.list_page(&prefix, token).await }
        })
    }

    async fn head(&self, key: &str) -> Result<Option<Listed>> {
        let client = &self.clients().await?.small;
        let out = match client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(sdk(&format!("checking {key}"), e)),
        };
        let metadata = out.metadata().into_iter().flatten();
        Ok(Some(Listed {
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified_ms: millis(out.last_modified()),
            version: out.e_tag().unwrap_or_default().to_owned(),
            metadata: metadata.map(|(k, v)| (k.clone(), v.clone())).collect(),
        }))
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let Some(out) = self.get_object(key, false).await? else {
            return Ok(None);
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > limit {
            return Err(Error::TooLarge {
                what: key.to_owned(),
                size,
                limit,
            });
        }
        let bytes = out.body.collect().await;
        Ok(Some(
            bytes
                .map_err(|e| body(STORE, &format!("reading {key}"), e))?
                .into_bytes(),
        ))
    }

    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let Some(out) = self.get_object(key, true).await? else {
            return Ok(None);
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let read_timeout = self.0.cfg.settings.read_timeout;
        let what = format!("reading {key}");
        // The body's chunks, each bounded by the read time-out (a stalled body is temporary).
        let chunks = futures::stream::unfold(out.body, move |mut b| {
            let what = what.clone();
            async move {
                match tokio::time::timeout(read_timeout, b.try_next()).await {
                    Err(_) => Some((Err(stalled(STORE, &what, read_timeout)), b)),
                    Ok(Ok(Some(chunk))) => Some((Ok(chunk), b)),
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) => Some((Err(body(STORE, &what, e)), b)),
                }
            }
        });
        Ok(Some((size, Box::pin(chunks))))
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        create: bool,
        metadata: &[(&str, String)],
    ) -> Result<PutOutcome> {
        if create && !self.0.cfg.create_only && self.head(key).await?.is_some() {
            return Ok(PutOutcome::Exists);
        }
        // Bodies up to 1 MiB (entries, records, small blobs) are bounded like other small
        // requests; larger ones only by the connect and read time-outs.
        let clients = self.clients().await?;
        let client = if body.len() <= 1 << 20 {
            &clients.small
        } else {
            &clients.big
        };
        let mut req = (client.put_object().bucket(self.bucket()).key(key))
            .content_length(body.len() as i64)
            .body(S3Body::from(body));
        for (k, v) in metadata {
            req = req.metadata(*k, v.clone());
        }
        if create && self.0.cfg.create_only {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            // 412: it exists. 409: a concurrent conditional write of the same key is in
            // progress, so it will exist.
            Err(e) if create && matches!(status(&e), Some(412) | Some(409)) => {
                Ok(PutOutcome::Exists)
            }
            Err(e) => Err(sdk(&format!("storing {key}"), e)),
        }
    }

    async fn put_stream(&self, key: &str, _size: u64, body: ByteStream) -> Result<()> {
        self.multipart(key, body).await
    }

    /// A copy onto itself with new metadata: a new modification time, the same bytes.
    async fn refresh(&self, key: &str) -> bool {
        let Ok(clients) = self.clients().await else {
            return false;
        };
        let copy = (clients.big.copy_object().bucket(self.bucket()).key(key))
            .copy_source(format!("{}/{key}", self.bucket()))
            .metadata_directive(MetadataDirective::Replace);
        match copy.send().await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("{self}: cannot refresh {key}: {}", sdk("refreshing", e));
                false
            }
        }
    }

    /// S3 deletes are idempotent.
    async fn delete(&self, key: &str) -> Result<()> {
        let client = &self.clients().await?.small;
        (client.delete_object().bucket(self.bucket()).key(key))
            .send()
            .await
            .map_err(|e| sdk(&format!("deleting {key}"), e))?;
        Ok(())
    }
}

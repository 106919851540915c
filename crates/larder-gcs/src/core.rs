//! The two clients a [`GcsStore`](crate::GcsStore) talks through, and the JSON API calls.
//!
//! - The official client (`google-cloud-storage`) reads objects (streamed) and writes small
//!   ones (single-shot: the resumable-upload threshold is raised above anything sent through
//!   it, since emulators do not serve resumable sessions well).
//! - Plain JSON API requests (`/storage/v1/…`, `/upload/storage/v1/…`) on the same reqwest and
//!   the same credentials do the rest: object metadata, listing, deletion, a copy onto itself
//!   (to refresh a blob's update time) and streamed uploads of large blobs. The official crate
//!   offers list and delete over gRPC only, which no emulator serves; its single-shot upload
//!   buffers the whole payload in memory.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_storage::client::Storage;
use larder_core::Result;
use reqwest_gcs::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::config::GcsStoreBuilder;
use crate::error::GcsError;

/// One object's metadata, from a listing or a metadata request.
#[derive(Debug, Clone)]
pub(crate) struct ObjectMeta {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) updated_ms: u64,
    pub(crate) generation: String,
    pub(crate) metadata: serde_json::Map<String, Value>,
}

impl ObjectMeta {
    fn from_json(v: &Value) -> Option<ObjectMeta> {
        let num = |k: &str| -> Option<u64> {
            match v.get(k)? {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            }
        };
        let updated_ms = v
            .get("updated")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond().max(0) as u64)
            .unwrap_or(0);
        Some(ObjectMeta {
            name: v.get("name")?.as_str()?.to_owned(),
            size: num("size").unwrap_or(0),
            updated_ms,
            generation: num("generation").map(|g| g.to_string()).unwrap_or_default(),
            metadata: v
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// A numeric custom metadata value.
    pub(crate) fn num(&self, key: &str) -> Option<u64> {
        self.metadata.get(key)?.as_str()?.parse().ok()
    }
}

/// Percent-encode an object name for a URL path segment (everything but unreserved bytes).
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The clients and credentials, made once on first use.
pub(crate) struct Clients {
    pub(crate) storage: Storage,
    http: reqwest_gcs::Client,
    creds: Credentials,
}

impl Clients {
    pub(crate) async fn new(cfg: &GcsStoreBuilder) -> Result<Clients> {
        // The crates are built without a default TLS provider (no aws-lc): use ring, as the S3
        // client does. Another part of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let creds = if cfg.anonymous == Some(true) {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| GcsError::Auth(e.to_string()).into_error("loading credentials"))?
        };
        use google_cloud_gax::retry_policy::RetryPolicyExt;
        let storage = Storage::builder()
            .with_endpoint(cfg.endpoint())
            .with_credentials(creds.clone())
            .with_retry_policy(
                google_cloud_storage::retry_policy::RetryableErrors
                    .with_attempt_limit(cfg.retries + 1),
            )
            // Single-shot writes only (see the module docs); nothing this big goes through it.
            .with_resumable_upload_threshold(usize::MAX / 2)
            .build()
            .await
            .map_err(|e| crate::error::config(format!("GCS client: {e}")))?;
        let http = reqwest_gcs::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(|e| GcsError::from(e).into_error("building the HTTP client"))?;
        Ok(Clients {
            storage,
            http,
            creds,
        })
    }

    /// A JSON API request to `path` (under the endpoint) with the credentials' headers.
    pub(crate) async fn request(
        &self,
        cfg: &GcsStoreBuilder,
        method: Method,
        path: &str,
    ) -> std::result::Result<RequestBuilder, GcsError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", cfg.endpoint()));
        match self.creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => req = req.headers(data),
            Ok(CacheableResource::NotModified) => {}
            Err(e) => return Err(GcsError::Auth(e.to_string())),
        }
        Ok(req)
    }
}

/// Send `req`; an error status becomes [`GcsError::Status`] with the service's message.
pub(crate) async fn send(
    req: RequestBuilder,
) -> std::result::Result<reqwest_gcs::Response, GcsError> {
    let resp = req.send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    Err(GcsError::Status {
        status: status.as_u16(),
        message: message.chars().take(500).collect(),
    })
}

/// Run `attempt` until it succeeds, fails permanently, or `retries` retries are spent, each
/// attempt bounded by `timeout`, with exponential backoff (100 ms, doubling).
pub(crate) async fn retrying<T, F, Fut>(
    retries: u32,
    timeout: Duration,
    mut attempt: F,
) -> std::result::Result<T, GcsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, GcsError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut n = 0;
    loop {
        let result = match tokio::time::timeout(timeout, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(GcsError::Status {
                status: 408,
                message: format!("no answer within {timeout:?}"),
            }),
        };
        match result {
            Err(e) if e.is_temporary() && n < retries => {
                n += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

pub(crate) fn is_not_found(e: &GcsError) -> bool {
    e.status() == Some(StatusCode::NOT_FOUND.as_u16())
}

pub(crate) fn parse_listing(v: &Value) -> (Vec<ObjectMeta>, Option<String>) {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ObjectMeta::from_json).collect())
        .unwrap_or_default();
    let next = v
        .get("nextPageToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    (items, next)
}

pub(crate) fn parse_object(v: &Value) -> Option<ObjectMeta> {
    ObjectMeta::from_json(v)
}

/// The body of a multipart upload: the object's JSON resource, then `data`, between boundary
/// lines. Returns the body and its content type.
pub(crate) fn multipart(
    resource: &Value,
    size: u64,
    data: BoxStream<'static, std::io::Result<Bytes>>,
) -> (reqwest_gcs::Body, String, u64) {
    use futures::StreamExt;
    let boundary = format!("larder-{:016x}", rand_u64());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let len = head.len() as u64 + size + tail.len() as u64;
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(data)
        .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
    (
        reqwest_gcs::Body::wrap_stream(body),
        format!("multipart/related; boundary={boundary}"),
        len,
    )
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_for_paths() {
        assert_eq!(encode("p/blobs/ab-1.x"), "p%2Fblobs%2Fab-1.x");
        assert_eq!(encode("a b"), "a%20b");
    }

    #[test]
    fn object_metadata_parses() {
        let v: Value = serde_json::from_str(
            r#"{"name":"p/entries/x","size":"12","generation":"1795455369923341",
                "updated":"2026-11-23T17:36:09.92334Z","metadata":{"larder-size":"99"}}"#,
        )
        .unwrap();
        let m = parse_object(&v).unwrap();
        assert_eq!((m.size, m.generation.as_str()), (12, "1795455369923341"));
        assert_eq!(m.num("larder-size"), Some(99));
        assert!(m.updated_ms > 1_700_000_000_000);
        let (items, next) = parse_listing(&serde_json::json!({"items":[v], "nextPageToken":"t"}));
        assert_eq!((items.len(), next.as_deref()), (1, Some("t")));
    }
}

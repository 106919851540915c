//! [`HttpStore`]: the [`Store`] implementation over larder's native HTTP protocol.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use larder_core::entry::MAX_ENTRY_BYTES;
use larder_core::store::check_hash_fn;
use larder_core::verify::{VerifyHooks, verified_stream};
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, Error, GetOptions, Key, PutMode, PutOptions,
    PutOutcome, Result, Store, StoreStats,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::config::HttpStoreBuilder;
use crate::error::{STORE, from_status, stalled, status_is_temporary, transport};

/// The header carrying a blob's size.
const SIZE_HEADER: &str = "x-larder-size";

/// `payload`, and the time it was last asked for a chunk (ms since `start`, shared).
fn watched(payload: ByteStream) -> (ByteStream, std::sync::Arc<(std::time::Instant, AtomicU64)>) {
    let last = std::sync::Arc::new((std::time::Instant::now(), AtomicU64::new(0)));
    let mark = std::sync::Arc::clone(&last);
    let stream = futures::stream::unfold(payload, move |mut payload| {
        let mark = std::sync::Arc::clone(&mark);
        async move {
            let item = payload.next().await;
            mark.1
                .store(mark.0.elapsed().as_millis() as u64, Ordering::Relaxed);
            item.map(|chunk| (chunk, payload))
        }
    });
    (Box::pin(stream), last)
}

/// Resolves once `last` has not moved for `stall`.
async fn stalled_for(last: &(std::time::Instant, AtomicU64), stall: Duration) {
    let tick = (stall / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let since = last.0.elapsed().as_millis() as u64 - last.1.load(Ordering::Relaxed);
        if since >= stall.as_millis() as u64 {
            return;
        }
    }
}
/// Digests per find-missing request (the server takes up to 100 000).
const FIND_MISSING_BATCH: usize = 50_000;

/// A store on a `larder-server`, over its native protocol. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct HttpStore {
    client: reqwest::Client,
    base: String,
    cfg: HttpStoreBuilder,
}

impl fmt::Display for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http store at {}", self.base)
    }
}

impl HttpStore {
    /// A store at `base_url` (e.g. `http://cache:8080/v1`) with default settings.
    ///
    /// # Errors
    /// As [`HttpStoreBuilder::build`].
    pub fn new(base_url: impl Into<String>) -> Result<HttpStore> {
        HttpStoreBuilder::new(base_url).build()
    }

    /// A builder, to set time-outs and retries.
    pub fn builder(base_url: impl Into<String>) -> HttpStoreBuilder {
        HttpStoreBuilder::new(base_url)
    }

    pub(crate) fn from_builder(cfg: HttpStoreBuilder) -> Result<HttpStore> {
        let mut builder = reqwest::Client::builder();
        if let Some(token) = &cfg.bearer_token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.0))
                .map_err(|_| Error::invalid("the bearer token is not a valid header value"))?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        // A plain http:// store never verifies a certificate: loading the system's CA files
        // (about 150 on Debian) would cost each short-lived process (`larder exec`, a ccache
        // helper's start) milliseconds for nothing.
        let plain = cfg
            .base_url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if plain && cfg.root_pem.is_none() {
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some(pem) = &cfg.root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::invalid(format!("cannot read the CA certificates: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .connect_timeout(cfg.connect_timeout)
            // Not reqwest's read time-out: it also runs while a request body is being sent, so
            // it would cut off large uploads. Stalls are caught per read instead (see `send`
            // and `verified`), and dead peers during uploads by TCP keep-alive.
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Store {
                store: STORE.into(),
                message: format!("cannot build an HTTP client: {e}"),
                temporary: false,
                source: Some(Box::new(e)),
            })?;
        Ok(HttpStore {
            client,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            cfg,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Send a request built by `make`, retrying temporary failures with backoff. `timeout`
    /// bounds the whole request (left unset for blob transfers).
    async fn send(
        &self,
        what: &str,
        timeout: Option<Duration>,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut delay = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            let mut req = make();
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            // Without a total time-out (blob downloads), still bound the wait for the answer.
            let sent = match tokio::time::timeout(self.cfg.read_timeout, req.send()).await {
                Ok(sent) => sent.map_err(|e| transport(what, e)),
                Err(_) => Err(stalled(what, self.cfg.read_timeout)),
            };
            let err = match sent {
                Ok(resp) if status_is_temporary(resp.status()) => {
                    let status = resp.status();
                    let message = resp.text().await.unwrap_or_default();
                    from_status(what, status, &message)
                }
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if !err.is_temporary() || attempt >= self.cfg.retries {
                return Err(err);
            }
            attempt += 1;
            tracing::debug!("{self}: {err}; retry {attempt} in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }

    fn small(&self) -> Option<Duration> {
        Some(self.cfg.request_timeout)
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("blobs/{}", digest.to_hex()));
        let resp = self
            .send("checking a blob", self.small(), || {
                self.client.request(Method::HEAD, &url)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            s => Err(from_status("checking a blob", s, "")),
        }
    }
}

/// Turn a response that is not a success into an error.
async fn check(what: &str, resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let message = resp.text().await.unwrap_or_default();
    Err(from_status(what, status, &message))
}

fn outcome(resp: &Response) -> PutOutcome {
    if resp.status() == StatusCode::CREATED {
        PutOutcome::Written
    } else {
        PutOutcome::Exists
    }
}

/// Verify a downloaded blob as it streams (see [`verified_stream`]): a body that hashes wrong
/// or has the wrong length ends with [`Error::Corrupt`]. A body cut short is `Corrupt` when the
/// server has since dropped the blob (it does so when its own verification fails), else a
/// temporary error. Nothing is removed here: the server removes damaged blobs itself.
fn verified<S>(inner: S, digest: Digest, size: u64, store: HttpStore) -> ByteStream
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
{
    let what = format!("blob {digest}");
    let read_timeout = store.cfg.read_timeout;
    let chunks = futures::stream::unfold(inner, move |mut b| {
        let (what, store) = (what.clone(), store.clone());
        async move {
            let err = match tokio::time::timeout(read_timeout, b.next()).await {
                Err(_) => stalled(&format!("reading {what}"), read_timeout),
                Ok(Some(Ok(chunk))) => return Some((Ok(chunk), b)),
                Ok(None) => return None,
                Ok(Some(Err(e))) => match store.blob_exists(&digest).await {
                    Ok(false) => Error::corrupt(what, "the server dropped it while sending"),
                    _ => transport(&format!("reading {what}"), e),
                },
            };
            Some((Err(err), b))
        }
    });
    verified_stream(chunks, digest, size, VerifyHooks::none())
}

#[async_trait]
impl Store for HttpStore {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.delete = true;
        cap.hit_stats = true;
        cap
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let url = self.url(&format!(
            "entries/{}?record_access={}",
            key.as_str(),
            u8::from(opts.record_access)
        ));
        let what = format!("entry {key}");
        let resp = self
            .send(&what, self.small(), || self.client.get(&url))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(&what, resp).await?;
        if resp.content_length().unwrap_or(0) > MAX_ENTRY_BYTES as u64 {
            return Err(Error::corrupt(what, "larger than the entry size limit"));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(&format!("reading {what}"), e))?;
        match Entry::decode(&bytes) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                tracing::warn!("{self}: {key}: {e}; treated as a miss");
                Ok(None)
            }
        }
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let body = Bytes::from(entry.encode()?);
        let mode = if opts.mode == PutMode::Create {
            "?mode=create"
        } else {
            ""
        };
        let url = self.url(&format!("entries/{}{mode}", key.as_str()));
        let what = format!("storing entry {key}");
        let resp = self
            .send(&what, self.small(), || {
                self.client.put(&url).body(body.clone())
            })
            .await?;
        let resp = check(&what, resp).await?;
        Ok(outcome(&resp))
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        check_hash_fn(self, self.capability(), [digest])?;
        let url = self.url(&format!("blobs/{}", digest.to_hex()));
        let what = format!("blob {digest}");
        let resp = self.send(&what, None, || self.client.get(&url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(&what, resp).await?;
        let size = resp
            .headers()
            .get(SIZE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or(resp.content_length())
            .ok_or_else(|| Error::Store {
                store: STORE.into(),
                message: format!("{what}: the server sent no size"),
                temporary: false,
                source: None,
            })?;
        let stream = verified(resp.bytes_stream().boxed(), *digest, size, self.clone());
        Ok(Some(BlobRead { size, stream }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        check_hash_fn(self, self.capability(), [digest])?;
        let url = self.url(&format!("blobs/{}", digest.to_hex()));
        let what = format!("storing blob {digest}");
        // The payload is consumed as it is sent, so this request cannot be replayed. The client
        // pulls the payload as fast as the connection takes it: a server that stops reading (or
        // stops answering once it has it all) for the read time-out has stalled.
        let (payload, last_pull) = watched(payload);
        let send = self
            .client
            .put(&url)
            .header(SIZE_HEADER, size)
            .body(reqwest::Body::wrap_stream(payload))
            .send();
        let stall = self.cfg.read_timeout;
        let resp = tokio::select! {
            resp = send => resp,
            () = stalled_for(&last_pull, stall) => return Err(stalled(&what, stall)),
        };
        let resp = match resp {
            Ok(resp) => resp,
            // A server that already holds the blob may answer and close before reading it all.
            Err(e) => match self.blob_exists(digest).await {
                Ok(true) => return Ok(PutOutcome::Exists),
                _ => return Err(transport(&what, e)),
            },
        };
        let resp = check(&what, resp).await?;
        Ok(outcome(&resp))
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        // Blobs of other functions than BLAKE3 are refused (Capability::sha256 is off).
        check_hash_fn(self, self.capability(), digests)?;
        let url = self.url("find-missing");
        let mut missing = Vec::new();
        for batch in digests.chunks(FIND_MISSING_BATCH) {
            let hexes: Vec<String> = batch.iter().map(Digest::to_hex).collect();
            let body = Bytes::from(serde_json::to_vec(&hexes).map_err(|e| {
                Error::invalid(format!("cannot encode a find-missing request: {e}"))
            })?);
            let resp = self
                .send("find-missing", self.small(), || {
                    self.client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                })
                .await?;
            let resp = check("find-missing", resp).await?;
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| transport("reading find-missing", e))?;
            let got: Vec<Digest> = serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                store: STORE.into(),
                message: format!("find-missing: bad answer: {e}"),
                temporary: false,
                source: None,
            })?;
            missing.extend(got);
        }
        Ok(missing)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let url = self.url(&format!("entries/{}", key.as_str()));
        let what = format!("deleting entry {key}");
        let resp = self
            .send(&what, self.small(), || self.client.delete(&url))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check(&what, resp).await?;
        Ok(true)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let url = self.url("stats");
        let resp = self
            .send("stats", self.small(), || self.client.get(&url))
            .await?;
        let resp = check("stats", resp).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport("reading stats", e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Store {
            store: STORE.into(),
            message: format!("stats: bad answer: {e}"),
            temporary: false,
            source: None,
        })
    }

    async fn flush(&self) -> Result<()> {
        let url = self.url("flush");
        let resp = self
            .send("flush", self.small(), || self.client.post(&url))
            .await?;
        check("flush", resp).await?;
        Ok(())
    }
}

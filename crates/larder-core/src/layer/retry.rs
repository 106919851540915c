//! The retry layer: one backoff loop for every backend, instead of one per backend.
//!
//! An operation that fails with a [temporary](crate::Error::is_temporary) error is tried again
//! after an exponentially growing delay with jitter (each delay drawn from its upper half), up to
//! [`RetryConfig::max_attempts`] attempts in all and never past [`RetryConfig::max_elapsed`]
//! since the first attempt. Any other error, and the last temporary one, is returned as is.
//!
//! What is retried, and why:
//! - Entry reads and writes, `find_missing`, `delete`, `stats` and `flush`: repeating them is
//!   harmless (a write of the same entry is the same write; a `delete` repeated after a lost
//!   answer reports `false`).
//! - `get_blob` and `place_blob`: the call is retried; `place_blob` truncates its destination on
//!   every attempt. Once a [`BlobRead`] is returned, errors inside its stream are the caller's:
//!   the bytes already consumed cannot be taken back.
//! - `put_blob`: retried only while its payload has not been read. The payload is a one-shot
//!   stream, so a failure after the inner store started reading it is returned as is.
//! - `list` (a stream) and `trim` (long, and locked per store) are never retried.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::Layered;
use crate::digest::Digest;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, GetOptions, Placement, PutOptions, PutOutcome, Store, StoreStats,
    VerifiedFile,
};

/// How [`Retry`] backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 turns retrying off).
    pub max_attempts: u32,
    /// The delay before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// `attempts` attempts in all, starting `initial` apart (the other bounds as default).
    pub fn new(max_attempts: u32, initial_backoff: Duration) -> Self {
        RetryConfig {
            max_attempts,
            initial_backoff,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0 for the first), jittered into its upper half.
    fn delay(&self, retry: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = base / 2;
        let spread = half.as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            random_u64() % spread
        };
        half + Duration::from_nanos(jitter)
    }
}

/// A random number from the standard library's per-instance hash keys (no extra dependency;
/// jitter needs spread, not quality).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(crate::statcache::now_ns());
    h.finish()
}

/// `S`, with temporary errors retried (see the [module docs](self)).
#[derive(Debug)]
pub struct Retry<S> {
    inner: S,
    config: RetryConfig,
}

impl<S: Store> Retry<S> {
    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner` with the default backoff.
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, RetryConfig::default())
    }

    /// `inner` with `config`'s backoff.
    pub fn with_config(inner: S, config: RetryConfig) -> Self {
        Retry { inner, config }
    }

    /// The delay before attempt `attempt + 1` after `e`, or `None` to give up.
    fn backoff(&self, started: Instant, attempt: u32, e: &Error, what: &str) -> Option<Duration> {
        if !e.is_temporary() || attempt >= self.config.max_attempts {
            return None;
        }
        let delay = self.config.delay(attempt - 1);
        if started.elapsed() + delay > self.config.max_elapsed {
            return None;
        }
        tracing::debug!(
            "{}: {what} failed ({e}); attempt {} in {:.2} s",
            self.inner,
            attempt + 1,
            delay.as_secs_f64()
        );
        Some(delay)
    }

    /// Run `op` until it succeeds, fails for good, or the budget is spent.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        self.run_while(what, op, || true).await
    }

    /// [`Retry::run`], for an operation that can be repeated only while `can_repeat` says so
    /// after a failure (its payload was not used up).
    async fn run_while<T, F, Fut, C>(&self, what: &str, mut op: F, can_repeat: C) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
        C: Fn() -> bool + Send,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let err = match op().await {
                Err(e) => e,
                ok => return ok,
            };
            if !can_repeat() {
                return Err(err);
            }
            match self.backoff(started, attempt, &err, what) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(err),
            }
        }
    }
}

impl<S: Store> fmt::Display for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// A one-shot payload handed to the inner store through a shared slot, so that an attempt that
/// failed before reading it leaves it in place for the next attempt.
struct Lazy {
    slot: Arc<Mutex<Option<ByteStream>>>,
    taken: Option<ByteStream>,
    started: bool,
}

impl Stream for Lazy {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            this.taken = this.slot.lock().ok().and_then(|mut s| s.take());
        }
        match &mut this.taken {
            Some(s) => s.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

#[async_trait]
impl<S: Store> Layered for Retry<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        self.run("reading an entry", || self.inner.get_entry_opts(key, opts))
            .await
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        self.run("writing an entry", || {
            self.inner.put_entry_opts(key, entry, opts)
        })
        .await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        self.run("reading a blob", || self.inner.get_blob(digest))
            .await
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        let slot = Arc::new(Mutex::new(Some(payload)));
        let op = || {
            let lazy: ByteStream = Box::pin(Lazy {
                slot: Arc::clone(&slot),
                taken: None,
                started: false,
            });
            self.inner.put_blob(digest, size, lazy)
        };
        // Once the inner store has taken the payload, it cannot be sent again.
        let can_repeat = || slot.lock().map(|s| s.is_some()).unwrap_or(false);
        self.run_while("writing a blob", op, can_repeat).await
    }

    /// Repeated while the file is still where it was (a store that took it and then failed
    /// cannot be given it again).
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        let op = || self.inner.put_blob_file(digest, file.clone());
        let can_repeat = || file.path().exists();
        self.run_while("writing a blob", op, can_repeat).await
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        self.run("placing a blob", || {
            self.inner.place_blob(digest, dest, how)
        })
        .await
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.run("finding missing blobs", || self.inner.find_missing(digests))
            .await
    }

    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        self.run("finding missing entries", || {
            self.inner.find_missing_entries(keys)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.run("deleting an entry", || self.inner.delete(key))
            .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.run("reading statistics", || self.inner.stats()).await
    }

    async fn flush(&self) -> Result<()> {
        self.run("flushing", || self.inner.flush()).await
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Retry<S>);

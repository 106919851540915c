//! The best-effort layer: a cache that fails or hangs never fails a build.
//!
//! On the build path (entry and blob reads and writes, `place_blob`, `find_missing`, `flush`)
//! every call is bounded by a time-out, and an error or time-out becomes what a cache may always
//! answer: a miss (`None`, `false`, every digest missing) or a skipped write (reported as
//! [`PutOutcome::Written`], as a refused admission is: a cache may drop any entry at any time).
//! The first such failure is logged as one `tracing::warn!` for this store and run; later ones
//! only at debug level.
//!
//! How long a failing store costs (the tier goal: "at most its time-out once per run"):
//! - A time-out, or a [temporary](crate::Error::is_temporary) error (connection refused or
//!   reset, throttling that outlived any [`Retry`](super::Retry) below this layer), marks the
//!   store down: every later call answers at once with a miss or a skipped write.
//! - A permanent error on a write (a read-only credential, a full bucket) stops writes for the
//!   rest of the run; reads go on.
//! - A permanent error on a read is a miss for that call only.
//!
//! What is not swallowed: errors that are the caller's or the data's, not the store's health:
//! invalid input (a blob that does not match its digest), corrupt data (restores already treat
//! it as a miss, and the store removes the bad copy) and operations the store does not support.
//! Maintenance operations (`delete`, `list`, `stats`, `trim`) pass through untouched: a user
//! asked for them and should see their errors.
//!
//! A blob read's stream is bounded too: a chunk that takes longer than the time-out ends the
//! stream with a temporary error and marks the store down (bytes already handed out cannot be
//! turned into a miss, so the reader sees the error; restores write to temporary files).
//! "One warning per run" means per [`BestEffort`] value: build one per store per process.
//!
//! Long-lived processes (the server, the worker) set [`BestEffortConfig::retry_after`]: a store
//! that is down is then tried again after that long, by one call while the others keep getting
//! misses (a half-open circuit breaker). When that call succeeds the store is up again, an
//! info line says so, and the next outage gets its own warning. Without it (the CLI's runs), down
//! is down until the process ends.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;

use super::Layered;
use crate::digest::Digest;
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, GetOptions, Placement, PutOptions, PutOutcome, Store, VerifiedFile,
};

/// Time-outs of [`BestEffort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BestEffortConfig {
    /// How long one call (an entry read or write, `find_missing`, `flush`, opening a blob read)
    /// may take, and how long a blob read may wait for its next chunk.
    pub timeout: Duration,
    /// How long one whole blob transfer (`put_blob`, `place_blob`) may take.
    pub transfer_timeout: Duration,
    /// Try a store that is down again after this long (`None`: never, for the rest of the run).
    pub retry_after: Option<Duration>,
}

impl Default for BestEffortConfig {
    fn default() -> Self {
        BestEffortConfig {
            timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(600),
            retry_after: None,
        }
    }
}

impl BestEffortConfig {
    /// Calls bounded by `timeout`, whole transfers by `transfer_timeout`.
    pub fn new(timeout: Duration, transfer_timeout: Duration) -> Self {
        BestEffortConfig {
            timeout,
            transfer_timeout,
            retry_after: None,
        }
    }

    /// These time-outs, with a store that is down tried again after `after`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

/// What went wrong with a call.
enum Failure {
    TimedOut(Duration),
    Failed(Error),
}

/// Whether calls of one kind (all, or writes) are skipped: since when it was closed, in ms
/// since the layer was made plus one, or 0 while it is open.
#[derive(Debug, Default)]
struct Gate {
    closed_at: AtomicU64,
}

/// What [`Gate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The store is up: call it.
    Open,
    /// The store is down: answer with a miss.
    Closed,
    /// The store was down long enough: this call tries it again.
    Probe,
}

impl Gate {
    fn admit(&self, now: u64, retry_after: Option<Duration>) -> Pass {
        let at = self.closed_at.load(Ordering::Relaxed);
        if at == 0 {
            return Pass::Open;
        }
        let Some(after) = retry_after else {
            return Pass::Closed;
        };
        if now.saturating_sub(at) < after.as_millis() as u64 {
            return Pass::Closed;
        }
        // One caller probes; the others see the gate closed anew until it reports back.
        match self
            .closed_at
            .compare_exchange(at, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Pass::Probe,
            Err(_) => Pass::Closed,
        }
    }

    fn is_closed(&self) -> bool {
        self.closed_at.load(Ordering::Relaxed) != 0
    }

    fn close(&self, now: u64) {
        let _ = self
            .closed_at
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Open the gate; whether it was closed.
    fn open(&self) -> bool {
        // A load first: the common case (open) writes nothing shared.
        self.closed_at.load(Ordering::Relaxed) != 0
            && self.closed_at.swap(0, Ordering::Relaxed) != 0
    }
}

/// How the store has behaved this run (shared with blob streams).
#[derive(Debug)]
struct Health {
    name: String,
    started: Instant,
    retry_after: Option<Duration>,
    down: Gate,
    writes_down: Gate,
    warned: AtomicBool,
    failures: AtomicU64,
}

impl Health {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Whether a call may go to the store (`false`: answer with a miss).
    fn admit(&self, write: bool) -> bool {
        let now = self.now();
        let pass = match self.down.admit(now, self.retry_after) {
            Pass::Open if write => self.writes_down.admit(now, self.retry_after),
            pass => pass,
        };
        pass != Pass::Closed
    }

    /// A call succeeded: the store (or its writes) is up again if it was down.
    fn succeeded(&self, write: bool) {
        let was_down = self.down.open() | (write && self.writes_down.open());
        if was_down {
            self.warned.store(false, Ordering::Relaxed);
            tracing::info!("cache {} answers again", self.name);
        }
    }

    /// Record a failure of `what` and decide what it costs from now on.
    fn failed(&self, what: &str, write: bool, failure: Failure) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let skipping = if self.retry_after.is_some() {
            "skipping this cache for a while"
        } else {
            "skipping this cache for the rest of the run"
        };
        let not_writing = if self.retry_after.is_some() {
            "not writing to this cache for a while"
        } else {
            "not writing to this cache for the rest of the run"
        };
        let now = self.now();
        let (problem, consequence) = match &failure {
            Failure::TimedOut(limit) => {
                self.down.close(now);
                (
                    format!("{what} timed out after {:.1} s", limit.as_secs_f64()),
                    skipping,
                )
            }
            Failure::Failed(e) if e.is_temporary() => {
                self.down.close(now);
                (format!("{what} failed: {e}"), skipping)
            }
            Failure::Failed(e) if write => {
                self.writes_down.close(now);
                (format!("{what} failed: {e}"), not_writing)
            }
            Failure::Failed(e) => (format!("{what} failed: {e}"), "treating it as a miss"),
        };
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!("cache {}: {problem}; {consequence}", self.name);
        } else {
            tracing::warn!("cache {}: {problem}; {consequence}", self.name);
        }
    }
}

/// Errors the layer hands back instead of swallowing (see the [module docs](self)).
fn passes_through(e: &Error) -> bool {
    matches!(e, Error::NotSupported { .. })
        || matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Corrupt)
}

/// `S`, with failures and time-outs turned into misses (see the [module docs](self)).
#[derive(Debug)]
pub struct BestEffort<S> {
    inner: S,
    config: BestEffortConfig,
    health: Arc<Health>,
}

impl<S: Store> BestEffort<S> {
    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner` with the default time-outs.
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, BestEffortConfig::default())
    }

    /// `inner` with `config`'s time-outs.
    pub fn with_config(inner: S, config: BestEffortConfig) -> Self {
        let health = Arc::new(Health {
            name: inner.to_string(),
            started: Instant::now(),
            retry_after: config.retry_after,
            down: Gate::default(),
            writes_down: Gate::default(),
            warned: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        });
        BestEffort {
            inner,
            config,
            health,
        }
    }

    /// Whether the store is down (skipped for the rest of the run, or until
    /// [`retry_after`](BestEffortConfig::retry_after) lets a call try it again).
    pub fn is_down(&self) -> bool {
        self.health.down.is_closed()
    }

    /// Whether writes are skipped (the store is down, or refused a write for good).
    pub fn writes_down(&self) -> bool {
        self.is_down() || self.health.writes_down.is_closed()
    }

    /// Failures (errors and time-outs) turned into misses or skipped writes so far.
    pub fn failures(&self) -> u64 {
        self.health.failures.load(Ordering::Relaxed)
    }

    /// Warnings logged so far: at most one per run, or per outage with
    /// [`retry_after`](BestEffortConfig::retry_after) (then this says whether the current or
    /// last outage was warned about).
    pub fn warnings(&self) -> u64 {
        u64::from(self.health.warned.load(Ordering::Relaxed))
    }

    /// Run `call` within `limit`: `Some` with its answer or an error that passes through,
    /// `None` when the caller should answer with a miss (or a skipped write).
    async fn guard<T, F>(
        &self,
        what: &str,
        write: bool,
        limit: Duration,
        call: F,
    ) -> Option<Result<T>>
    where
        F: Future<Output = Result<T>> + Send,
    {
        if !self.health.admit(write) {
            return None;
        }
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(v)) => {
                self.health.succeeded(write);
                Some(Ok(v))
            }
            Ok(Err(e)) if passes_through(&e) => Some(Err(e)),
            // "Not found" answers a read (a miss); on a write it is a failure like any other.
            Ok(Err(e)) if e.is_not_found() && !write => {
                self.health.succeeded(write);
                None
            }
            Ok(Err(e)) => {
                self.health.failed(what, write, Failure::Failed(e));
                None
            }
            Err(_) => {
                self.health.failed(what, write, Failure::TimedOut(limit));
                None
            }
        }
    }
}

impl<S: Store> fmt::Display for BestEffort<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// `stream`, with each chunk bounded by `limit` and failures reported to `health`.
fn watched(stream: ByteStream, limit: Duration, health: Arc<Health>) -> ByteStream {
    let s = futures::stream::unfold(Some(stream), move |state| {
        let health = Arc::clone(&health);
        async move {
            let mut stream = state?;
            match tokio::time::timeout(limit, stream.next()).await {
                Ok(None) => None,
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(e))) => {
                    if !passes_through(&e) {
                        health.failed("reading a blob", false, Failure::Failed(clone_error(&e)));
                    }
                    Some((Err(e), None))
                }
                Err(_) => {
                    health.failed("reading a blob", false, Failure::TimedOut(limit));
                    let e = Error::Store {
                        store: health.name.clone(),
                        message: format!(
                            "no data for {:.1} s while reading a blob",
                            limit.as_secs_f64()
                        ),
                        temporary: true,
                        source: None,
                    };
                    Some((Err(e), None))
                }
            }
        }
    });
    Box::pin(s)
}

/// A copy of `e` with its message and classification (errors are not `Clone`).
fn clone_error(e: &Error) -> Error {
    Error::Store {
        store: String::new(),
        message: e.to_string(),
        temporary: e.is_temporary(),
        source: None,
    }
}

#[async_trait]
impl<S: Store> Layered for BestEffort<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let call = self.inner.get_entry_opts(key, opts);
        let answer = self.guard("reading an entry", false, self.config.timeout, call);
        answer.await.unwrap_or(Ok(None))
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let call = self.inner.put_entry_opts(key, entry, opts);
        let answer = self.guard("writing an entry", true, self.config.timeout, call);
        answer.await.unwrap_or(Ok(PutOutcome::Written))
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let call = self.inner.get_blob(digest);
        let answer = self.guard("reading a blob", false, self.config.timeout, call);
        match answer.await {
            Some(Ok(Some(read))) => Ok(Some(BlobRead {
                size: read.size,
                stream: watched(read.stream, self.config.timeout, Arc::clone(&self.health)),
            })),
            Some(other) => other,
            None => Ok(None),
        }
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        let call = self.inner.put_blob(digest, size, payload);
        let limit = self.config.transfer_timeout;
        let answer = self.guard("writing a blob", true, limit, call);
        answer.await.unwrap_or(Ok(PutOutcome::Written))
    }

    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        let call = self.inner.put_blob_file(digest, file);
        let limit = self.config.transfer_timeout;
        let answer = self.guard("writing a blob", true, limit, call);
        answer.await.unwrap_or(Ok(PutOutcome::Written))
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let call = self.inner.place_blob(digest, dest, how);
        let limit = self.config.transfer_timeout;
        let answer = self.guard("placing a blob", false, limit, call);
        answer.await.unwrap_or(Ok(false))
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let call = self.inner.find_missing(digests);
        let answer = self.guard("finding missing blobs", false, self.config.timeout, call);
        answer.await.unwrap_or_else(|| Ok(digests.to_vec()))
    }

    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        let call = self.inner.find_missing_entries(keys);
        let answer = self.guard("finding missing entries", false, self.config.timeout, call);
        answer.await.unwrap_or_else(|| Ok(keys.to_vec()))
    }

    async fn flush(&self) -> Result<()> {
        let call = self.inner.flush();
        let answer = self.guard("flushing", true, self.config.timeout, call);
        answer.await.unwrap_or(Ok(()))
    }
}

crate::impl_store_for_layer!(impl<S: Store> for BestEffort<S>);

//! Every layer over the conformance suite, and each layer's own behaviour, on the in-memory
//! reference store (and small stores that fail or hang on purpose).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Admission, BestEffort, BestEffortConfig, Progress, ReadOnly, Retry, RetryConfig, Tier, Tiered,
    UploadQueue, copy_entry,
};
use crate::admission::{AdmissionCandidate, AdmissionPolicy};
use crate::entry::{Content, Entry, Output, OutputKind};
use crate::error::{Error, ErrorKind};
use crate::store::{
    BlobRead, ByteStream, GetOptions, Placement, PutOptions, PutOutcome, VerifiedFile,
};
use crate::testkit::{Harness, MemoryStore, run_all};
use crate::{Digest, Key, Store, StoreExt};

// ---------------------------------------------------------------------------------------------
// Conformance: every layer passes the shared suite.

/// A layered store over memory stores; damage is done to every memory store underneath.
struct LayerHarness {
    store: Arc<dyn Store>,
    under: Vec<Arc<MemoryStore>>,
}

#[async_trait]
impl Harness for LayerHarness {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        let mut any = false;
        for m in &self.under {
            any |= m.corrupt_blob(digest);
        }
        any
    }
    async fn corrupt_entry(&self, key: &Key) -> bool {
        let mut any = false;
        for m in &self.under {
            any |= m.corrupt_entry(key);
        }
        any
    }
    fn large_blob_bytes(&self) -> u64 {
        32 << 20
    }
}

fn one(wrap: impl FnOnce(Arc<MemoryStore>) -> Arc<dyn Store>) -> LayerHarness {
    let m = Arc::new(MemoryStore::new());
    LayerHarness {
        store: wrap(Arc::clone(&m)),
        under: vec![m],
    }
}

#[derive(Debug)]
struct AdmitAll;

impl AdmissionPolicy for AdmitAll {
    fn name(&self) -> &str {
        "all"
    }
    fn admit(&self, _: AdmissionCandidate, _: u64) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_passes_the_suite() {
    run_all(&one(|m| Arc::new(Retry::new(m)))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn best_effort_passes_the_suite() {
    run_all(&one(|m| Arc::new(BestEffort::new(m)))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn best_effort_over_retry_passes_the_suite() {
    run_all(&one(|m| Arc::new(BestEffort::new(Retry::new(m))))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_passes_the_suite() {
    run_all(&one(|m| Arc::new(Admission::new(m, Arc::new(AdmitAll))))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_passes_the_suite() {
    run_all(&one(|m| Arc::new(Progress::new(m)))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tiered_passes_the_suite() {
    let fast = Arc::new(MemoryStore::new());
    let slow = Arc::new(MemoryStore::new());
    let tiered = Tiered::new(vec![
        Tier::new(fast.clone()),
        Tier::new(Arc::new(BestEffort::new(slow.clone()))),
    ])
    .expect("two tiers");
    run_all(&LayerHarness {
        store: Arc::new(tiered),
        under: vec![fast, slow],
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tiered_with_blob_backfill_passes_the_suite() {
    let fast = Arc::new(MemoryStore::new());
    let slow = Arc::new(MemoryStore::new());
    let tiered = Tiered::new(vec![Tier::new(fast.clone()), Tier::new(slow.clone())])
        .expect("two tiers")
        .with_blob_backfill(true);
    run_all(&LayerHarness {
        store: Arc::new(tiered),
        under: vec![fast, slow],
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn key(name: &str) -> Key {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Key::new(format!("layers/{name}/{n}")).expect("a valid key")
}

/// Store `bytes` as a blob and an entry naming it under `k`.
async fn put_with_blob(store: &dyn Store, k: &Key, bytes: &[u8]) -> Entry {
    let digest = store
        .put_blob_bytes(Bytes::copy_from_slice(bytes))
        .await
        .expect("put blob");
    let entry = entry_naming(k, digest, bytes.len() as u64);
    store.put_entry(k, &entry).await.expect("put entry");
    entry
}

fn entry_naming(k: &Key, digest: Digest, size: u64) -> Entry {
    let mut e = Entry::new(k.as_str(), "layers-test");
    e.outputs.push(Output {
        path: "out.bin".into(),
        kind: OutputKind::File {
            content: Content::blob(digest, size),
            executable: false,
        },
    });
    e
}

fn small_entry(k: &Key, bytes: &[u8]) -> Entry {
    let mut e = Entry::new(k.as_str(), "layers-test");
    e.outputs.push(Output {
        path: "f".into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    });
    e
}

fn one_chunk(bytes: &'static [u8]) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok(Bytes::from_static(bytes))
    }))
}

/// How a [`Broken`] store misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Every call fails with a temporary error.
    Temporary,
    /// Every call fails with a permanent error.
    Permanent,
    /// Every call hangs forever.
    Hang,
    /// The first `n` calls fail with a temporary error, then the store works.
    TemporaryFor(u64),
    /// `put_blob` reads its payload, then fails with a temporary error.
    TemporaryAfterReading,
    /// A blob read sends its first chunk, then fails with a temporary error (a connection cut
    /// part-way through a download).
    CutBlobReads,
}

/// A real store (memory underneath) that fails or hangs on the build path, counting calls.
#[derive(Debug)]
struct Broken {
    inner: MemoryStore,
    fault: Fault,
    calls: AtomicU64,
}

impl Broken {
    fn new(fault: Fault) -> Broken {
        Broken {
            inner: MemoryStore::new(),
            fault,
            calls: AtomicU64::new(0),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Count a call and misbehave if the fault says so.
    async fn enter(&self) -> crate::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let temporary = match self.fault {
            Fault::Hang => futures::future::pending().await,
            Fault::Temporary => true,
            Fault::Permanent => false,
            Fault::TemporaryFor(k) if n < k => true,
            Fault::TemporaryFor(_) | Fault::TemporaryAfterReading | Fault::CutBlobReads => {
                return Ok(());
            }
        };
        Err(Error::Store {
            store: "broken".into(),
            message: format!("call {n} failed on purpose"),
            temporary,
            source: None,
        })
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broken({:?})", self.fault)
    }
}

#[async_trait]
impl super::Layered for Broken {
    type Inner = MemoryStore;
    fn inner(&self) -> &MemoryStore {
        &self.inner
    }
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> crate::Result<Option<Entry>> {
        self.enter().await?;
        self.inner.get_entry_opts(key, opts).await
    }
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> crate::Result<PutOutcome> {
        self.enter().await?;
        self.inner.put_entry_opts(key, entry, opts).await
    }
    async fn get_blob(&self, digest: &Digest) -> crate::Result<Option<BlobRead>> {
        self.enter().await?;
        let read = self.inner.get_blob(digest).await?;
        if self.fault != Fault::CutBlobReads {
            return Ok(read);
        }
        Ok(read.map(|r| {
            let cut = futures::stream::once(async {
                Err(Error::Store {
                    store: "broken".into(),
                    message: "connection cut part-way through a blob".into(),
                    temporary: true,
                    source: None,
                })
            });
            BlobRead {
                size: r.size,
                stream: Box::pin(r.stream.take(1).chain(cut)),
            }
        }))
    }
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut payload: ByteStream,
    ) -> crate::Result<PutOutcome> {
        self.enter().await?;
        if self.fault == Fault::TemporaryAfterReading {
            while payload.next().await.is_some() {}
            return Err(Error::Store {
                store: "broken".into(),
                message: "failed after reading the payload".into(),
                temporary: true,
                source: None,
            });
        }
        self.inner.put_blob(digest, size, payload).await
    }
    async fn place_blob(
        &self,
        digest: &Digest,
        dest: &Path,
        how: Placement,
    ) -> crate::Result<bool> {
        self.enter().await?;
        self.inner.place_blob(digest, dest, how).await
    }
    async fn find_missing(&self, digests: &[Digest]) -> crate::Result<Vec<Digest>> {
        self.enter().await?;
        self.inner.find_missing(digests).await
    }
}
crate::impl_store_for_layer!(Broken);

/// Counts `WARN` events (installed per test thread with `set_default`).
struct WarnCounter(Arc<AtomicU64>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// ---------------------------------------------------------------------------------------------
// The forwarding base.

#[tokio::test]
async fn a_layer_forwards_what_it_does_not_override() {
    // `Broken` overrides the build path only; delete, list and stats reach the memory store.
    let b = Broken::new(Fault::TemporaryFor(0));
    let k = key("forward");
    b.put_entry(&k, &small_entry(&k, b"x")).await.expect("put");
    assert_eq!(b.list().count().await, 1);
    assert_eq!(b.stats().await.expect("stats").entries, 1);
    assert!(b.delete(&k).await.expect("delete"));
    assert_eq!(b.calls(), 1, "only the overridden put went through `enter`");
    assert_eq!(Store::capability(&b), b.inner.capability());
}

// ---------------------------------------------------------------------------------------------
// Read-only.

#[tokio::test]
async fn read_only_refuses_writes_with_a_clear_message_and_reads_unchanged() {
    let mem = Arc::new(MemoryStore::new());
    let k = key("ro");
    let entry = put_with_blob(&*mem, &k, b"read me").await;
    let ro = ReadOnly::new(Arc::clone(&mem));

    let err = ro
        .put_entry(&k, &small_entry(&k, b"nope"))
        .await
        .expect_err("a read-only store refuses entry writes");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.to_string(),
        "memory does not support writing entries: it is read-only"
    );
    let err = ro
        .put_blob(&Digest::of(b"blob"), 4, one_chunk(b"blob"))
        .await
        .expect_err("a read-only store refuses blob writes");
    assert!(err.to_string().contains("read-only"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let upload = dir.path().join("upload");
    std::fs::write(&upload, b"blob").expect("write");
    let err = ro
        .put_blob_file(&Digest::of(b"blob"), VerifiedFile::new(&upload, 4))
        .await
        .expect_err("a read-only store refuses blobs from files");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(upload.exists(), "the refused file was taken");
    assert!(
        mem.find_missing(&[Digest::of(b"blob")])
            .await
            .expect("find")
            .len()
            == 1
    );
    assert!(ro.delete(&k).await.is_err());
    assert!(ro.trim(&Default::default(), None).await.is_err());
    assert!(!ro.capability().delete && !ro.capability().trim);
    assert_eq!(ro.to_string(), "memory (read-only)");

    // Reads are the inner store's.
    assert_eq!(ro.get_entry(&k).await.expect("get"), Some(entry.clone()));
    let d = entry.blob_digests()[0];
    assert_eq!(
        ro.get_blob_bytes(&d, 1 << 20).await.expect("blob"),
        Some(b"read me".to_vec())
    );
    assert!(ro.find_missing(&[d]).await.expect("find").is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("placed");
    assert!(
        ro.place_blob(&d, &dest, Placement::Copy)
            .await
            .expect("place")
    );
    assert_eq!(std::fs::read(&dest).expect("read placed"), b"read me");
    assert_eq!(ro.list().count().await, 1);
    assert!(ro.flush().await.is_ok());
    // Nothing changed underneath.
    assert_eq!(mem.get_entry(&k).await.expect("get"), Some(entry));
}

// ---------------------------------------------------------------------------------------------
// Best effort.

#[tokio::test]
async fn best_effort_turns_failures_into_misses_with_one_warning() {
    let warns = Arc::new(AtomicU64::new(0));
    let _guard = tracing::subscriber::set_default(WarnCounter(Arc::clone(&warns)));
    let be = BestEffort::new(Broken::new(Fault::Permanent));
    let k = key("be");
    let d = Digest::of(b"blob");

    for _ in 0..3 {
        assert_eq!(be.get_entry(&k).await.expect("a miss, not an error"), None);
    }
    assert!(be.get_blob(&d).await.expect("a miss").is_none());
    assert_eq!(be.find_missing(&[d]).await.expect("all missing"), vec![d]);
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        !be.place_blob(&d, &dir.path().join("x"), Placement::Copy)
            .await
            .expect("a miss")
    );
    // Permanent read errors cost each call but never stop reads.
    assert_eq!(be.get_ref().calls(), 6);
    assert!(!be.is_down());

    // A permanent write error stops writes for the run (reported as skipped, not failed).
    let e = small_entry(&k, b"x");
    assert_eq!(
        be.put_entry(&k, &e).await.expect("skipped"),
        PutOutcome::Written
    );
    assert!(be.writes_down());
    assert_eq!(
        be.put_blob(&d, 4, one_chunk(b"blob"))
            .await
            .expect("skipped"),
        PutOutcome::Written
    );
    assert_eq!(
        be.get_ref().calls(),
        7,
        "writes after the first failure skip the store"
    );

    assert_eq!(be.failures(), 7);
    assert_eq!(be.warnings(), 1);
    assert_eq!(
        warns.load(Ordering::Relaxed),
        1,
        "exactly one warning per store and run"
    );
}

#[tokio::test]
async fn best_effort_skips_a_store_that_failed_temporarily() {
    let be = BestEffort::new(Broken::new(Fault::Temporary));
    let k = key("be-down");
    assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
    assert!(be.is_down());
    for _ in 0..5 {
        assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
        assert_eq!(
            be.put_entry(&k, &small_entry(&k, b"x"))
                .await
                .expect("skipped"),
            PutOutcome::Written
        );
    }
    assert_eq!(
        be.get_ref().calls(),
        1,
        "a store that is down is not called again"
    );
    assert_eq!(be.warnings(), 1);
}

#[tokio::test]
async fn best_effort_costs_a_hanging_store_one_time_out() {
    let limit = Duration::from_millis(200);
    let be = BestEffort::with_config(
        Broken::new(Fault::Hang),
        BestEffortConfig::new(limit, limit),
    );
    let k = key("hang");
    let started = Instant::now();
    assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
    let first = started.elapsed();
    assert!(first >= limit, "answered before the time-out: {first:?}");
    assert!(be.is_down());

    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
        assert!(
            be.get_blob(&Digest::of(b"x"))
                .await
                .expect("a miss")
                .is_none()
        );
        assert_eq!(
            be.put_entry(&k, &small_entry(&k, b"x"))
                .await
                .expect("skipped"),
            PutOutcome::Written
        );
    }
    let rest = started.elapsed();
    assert!(
        rest < limit,
        "later calls should answer at once, took {rest:?}"
    );
    assert_eq!(be.get_ref().calls(), 1);
    assert_eq!(be.warnings(), 1);
}

#[tokio::test]
async fn best_effort_tries_a_down_store_again_after_retry_after() {
    let limit = Duration::from_secs(5);
    let after = Duration::from_millis(100);
    let be = BestEffort::with_config(
        Broken::new(Fault::TemporaryFor(1)),
        BestEffortConfig::new(limit, limit).retry_after(after),
    );
    let k = key("be-recover");
    assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
    assert!(be.is_down());
    assert_eq!(be.get_entry(&k).await.expect("a miss"), None);
    assert_eq!(be.get_ref().calls(), 1, "down: not called");
    assert_eq!(be.warnings(), 1);

    tokio::time::sleep(after + Duration::from_millis(20)).await;
    let e = small_entry(&k, b"back");
    assert_eq!(
        be.put_entry(&k, &e).await.expect("put"),
        PutOutcome::Written
    );
    assert_eq!(be.get_ref().calls(), 2, "one call tried the store again");
    assert!(!be.is_down());
    assert_eq!(be.get_entry(&k).await.expect("get"), Some(e));
    assert_eq!(be.warnings(), 0, "the next outage gets its own warning");
}

#[tokio::test]
async fn best_effort_passes_the_callers_mistakes_through() {
    let be = BestEffort::new(MemoryStore::new());
    let wrong = Digest::of(b"something else");
    let err = be
        .put_blob(&wrong, 4, one_chunk(b"blob"))
        .await
        .expect_err("a blob under the wrong digest is the caller's error");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(be.failures(), 0);
    assert!(!be.writes_down());
}

// ---------------------------------------------------------------------------------------------
// Retry.

fn fast_retry(attempts: u32) -> RetryConfig {
    RetryConfig::new(attempts, Duration::from_millis(1))
}

#[tokio::test]
async fn retry_retries_temporary_errors_until_they_pass() {
    let r = Retry::with_config(Broken::new(Fault::TemporaryFor(2)), fast_retry(4));
    let k = key("retry");
    assert_eq!(r.get_entry(&k).await.expect("third attempt works"), None);
    assert_eq!(r.get_ref().calls(), 3);
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts() {
    let r = Retry::with_config(Broken::new(Fault::Temporary), fast_retry(4));
    let err = r.get_entry(&key("retry")).await.expect_err("always fails");
    assert!(err.is_temporary());
    assert_eq!(r.get_ref().calls(), 4);
}

#[tokio::test]
async fn retry_does_not_retry_permanent_errors() {
    let r = Retry::with_config(Broken::new(Fault::Permanent), fast_retry(4));
    let err = r.get_entry(&key("retry")).await.expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(r.get_ref().calls(), 1);
}

#[tokio::test]
async fn retry_stops_at_the_time_budget() {
    let mut config = RetryConfig::new(100, Duration::from_millis(40));
    config.max_elapsed = Duration::from_millis(100);
    let r = Retry::with_config(Broken::new(Fault::Temporary), config);
    let started = Instant::now();
    assert!(r.get_entry(&key("retry")).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(r.get_ref().calls() < 10, "{} attempts", r.get_ref().calls());
}

#[tokio::test]
async fn retry_repeats_a_blob_write_only_while_its_payload_is_unread() {
    // Fails before reading: the same payload goes again and lands.
    let r = Retry::with_config(Broken::new(Fault::TemporaryFor(1)), fast_retry(4));
    let d = Digest::of(b"blob");
    assert_eq!(
        r.put_blob(&d, 4, one_chunk(b"blob"))
            .await
            .expect("second attempt"),
        PutOutcome::Written
    );
    assert_eq!(r.get_ref().calls(), 2);
    assert_eq!(
        r.get_blob_bytes(&d, 16).await.expect("read"),
        Some(b"blob".to_vec())
    );

    // Fails after reading: not repeatable, returned as is.
    let r = Retry::with_config(Broken::new(Fault::TemporaryAfterReading), fast_retry(4));
    let err = r
        .put_blob(&d, 4, one_chunk(b"blob"))
        .await
        .expect_err("a consumed payload is not sent twice");
    assert!(err.is_temporary());
    assert_eq!(r.get_ref().calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Admission.

#[derive(Debug)]
struct AtMost(u64);

impl AdmissionPolicy for AtMost {
    fn name(&self) -> &str {
        "at-most"
    }
    fn admit(&self, c: AdmissionCandidate, _: u64) -> bool {
        c.size <= self.0
    }
}

#[tokio::test]
async fn admission_skips_refused_entries_without_an_error() {
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let a = Admission::new(MemoryStore::new(), Arc::new(AtMost(4))).on_refused(Arc::new(
        move |_k, c| {
            seen2.fetch_add(c.size, Ordering::Relaxed);
        },
    ));
    let small = key("admit-small");
    let big = key("admit-big");
    assert_eq!(
        a.put_entry(&small, &small_entry(&small, b"ok"))
            .await
            .expect("put"),
        PutOutcome::Written
    );
    assert_eq!(
        a.put_entry(&big, &small_entry(&big, b"far too big"))
            .await
            .expect("a refusal is not an error"),
        PutOutcome::Written
    );
    assert!(a.get_entry(&small).await.expect("get").is_some());
    assert!(a.get_entry(&big).await.expect("get").is_none());
    assert_eq!(a.refused(), 1);
    assert_eq!(a.refused_bytes(), 11);
    assert_eq!(seen.load(Ordering::Relaxed), 11);
}

// ---------------------------------------------------------------------------------------------
// Progress.

#[tokio::test]
async fn progress_counts_operations_and_bytes() {
    let total = Arc::new(AtomicU64::new(0));
    let total2 = Arc::clone(&total);
    let p = Progress::with_callback(
        MemoryStore::new(),
        Arc::new(move |n| {
            total2.fetch_add(n, Ordering::Relaxed);
        }),
    );
    let k = key("progress");
    let entry = put_with_blob(&p, &k, b"0123456789").await;
    assert!(p.get_entry(&k).await.expect("get").is_some());
    assert!(
        p.get_entry(&key("progress-miss"))
            .await
            .expect("get")
            .is_none()
    );
    let d = entry.blob_digests()[0];
    assert_eq!(
        p.get_blob_bytes(&d, 64)
            .await
            .expect("read")
            .map(|b| b.len()),
        Some(10)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        p.place_blob(&d, &dir.path().join("b"), Placement::Copy)
            .await
            .expect("place")
    );
    let c = p.counts();
    assert_eq!(
        (c.entry_reads, c.entry_hits, c.entry_writes),
        (2, 1, 1),
        "{c:?}"
    );
    assert_eq!((c.blob_reads, c.blob_writes, c.blobs_placed), (1, 1, 1));
    assert_eq!((c.bytes_written, c.bytes_read), (10, 20));
    assert_eq!(total.load(Ordering::Relaxed), 30);
}

// ---------------------------------------------------------------------------------------------
// Tiered.

/// A fast and a slow memory tier, each counted.
struct TwoTiers {
    fast: Arc<Progress<Arc<MemoryStore>>>,
    slow: Arc<Progress<Arc<MemoryStore>>>,
    tiered: Tiered,
}

fn two_tiers(slow_write: impl FnOnce(Arc<dyn Store>) -> Tier) -> TwoTiers {
    let fast = Arc::new(Progress::new(Arc::new(MemoryStore::new())));
    let slow = Arc::new(Progress::new(Arc::new(MemoryStore::new())));
    let tiered =
        Tiered::new(vec![Tier::new(fast.clone()), slow_write(slow.clone())]).expect("two tiers");
    TwoTiers { fast, slow, tiered }
}

#[tokio::test]
async fn tiered_writes_reach_every_tier() {
    let t = two_tiers(Tier::new);
    let k = key("tier-write");
    let bytes = vec![7u8; 3 * crate::store::CHUNK_SIZE + 5];
    let entry = put_with_blob(&t.tiered, &k, &bytes).await;
    let d = entry.blob_digests()[0];
    for tier in [&t.fast, &t.slow] {
        assert_eq!(tier.get_entry(&k).await.expect("get"), Some(entry.clone()));
        assert_eq!(
            tier.get_blob_bytes(&d, 1 << 23).await.expect("blob"),
            Some(bytes.clone())
        );
    }
    // So does a blob stored from a verified file.
    let dir = tempfile::tempdir().expect("tempdir");
    let upload = dir.path().join("upload");
    let from_file = b"a blob stored from a file".to_vec();
    std::fs::write(&upload, &from_file).expect("write");
    let fd = Digest::of(&from_file);
    let file = VerifiedFile::new(&upload, from_file.len() as u64);
    t.tiered.put_blob_file(&fd, file).await.expect("put file");
    for tier in [&t.fast, &t.slow] {
        assert_eq!(
            tier.get_blob_bytes(&fd, 1 << 20).await.expect("blob"),
            Some(from_file.clone())
        );
    }
    // A digest missing from any tier written synchronously is reported missing.
    let only_slow = t
        .slow
        .put_blob_bytes(Bytes::from_static(b"slow only"))
        .await
        .expect("put");
    assert_eq!(
        t.tiered.find_missing(&[d, only_slow]).await.expect("find"),
        vec![only_slow]
    );
}

#[tokio::test]
async fn tiered_hit_in_a_slow_tier_backfills_the_fast_one() {
    let t = two_tiers(Tier::new);
    let k = key("tier-backfill");
    let entry = put_with_blob(&*t.slow, &k, b"from far away").await;
    let d = entry.blob_digests()[0];
    assert!(t.fast.get_entry(&k).await.expect("get").is_none());

    assert_eq!(
        t.tiered.get_entry(&k).await.expect("get"),
        Some(entry.clone())
    );
    assert_eq!(t.fast.get_entry(&k).await.expect("get"), Some(entry));
    assert!(t.fast.find_missing(&[d]).await.expect("find").is_empty());
    let stats = t.tiered.tier_stats();
    assert_eq!((stats[0].hits, stats[0].misses), (0, 1), "{stats:?}");
    assert_eq!((stats[1].hits, stats[1].misses), (1, 0), "{stats:?}");
    assert_eq!(
        (stats[0].backfilled, stats[0].backfilled_bytes),
        (1, 13),
        "{stats:?}"
    );

    // The next read is a fast hit and leaves the slow tier alone.
    let slow_before = t.slow.counts();
    assert!(t.tiered.get_entry(&k).await.expect("get").is_some());
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        t.tiered
            .place_blob(&d, &dir.path().join("b"), Placement::Copy)
            .await
            .expect("place")
    );
    assert_eq!(
        t.slow.counts(),
        slow_before,
        "a fast hit touched the slow tier"
    );
    assert_eq!(t.tiered.tier_stats()[0].hits, 1);
}

#[tokio::test]
async fn tiered_a_backfill_the_slow_tier_cuts_short_is_its_failure_not_the_fast_ones() {
    let warns = Arc::new(AtomicU64::new(0));
    let _guard = tracing::subscriber::set_default(WarnCounter(Arc::clone(&warns)));
    let fast = Arc::new(MemoryStore::new());
    let slow = Arc::new(Broken::new(Fault::CutBlobReads));
    let k = key("tier-cut");
    let entry = put_with_blob(&slow.inner, &k, &vec![3u8; 3 * crate::store::CHUNK_SIZE]).await;
    let tiered = Tiered::new(vec![
        Tier::new(fast.clone()),
        Tier::new(Arc::new(BestEffort::new(Arc::clone(&slow)))),
    ])
    .expect("two tiers");

    // The hit is answered; the backfill fails, and the fast tier holds nothing of it.
    assert_eq!(
        tiered.get_entry(&k).await.expect("get"),
        Some(entry.clone())
    );
    assert_eq!(fast.get_entry(&k).await.expect("get"), None);
    assert_eq!(
        fast.find_missing(&entry.blob_digests())
            .await
            .expect("find"),
        entry.blob_digests()
    );
    // One warning (the slow tier's best-effort layer); the error is the slow tier's.
    let stats = tiered.tier_stats();
    assert_eq!((stats[0].errors, stats[1].errors), (0, 1), "{stats:?}");
    assert_eq!(warns.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn tiered_inspection_reads_do_not_backfill() {
    let t = two_tiers(Tier::new);
    let k = key("tier-quiet");
    put_with_blob(&*t.slow, &k, b"quiet").await;
    let quiet = GetOptions {
        record_access: false,
    };
    assert!(
        t.tiered
            .get_entry_opts(&k, quiet)
            .await
            .expect("get")
            .is_some()
    );
    assert!(t.fast.get_entry(&k).await.expect("get").is_none());
}

#[tokio::test]
async fn tiered_blob_backfill_keeps_blobs_read_from_a_slow_tier() {
    let t = two_tiers(Tier::new);
    let tiered = t.tiered.with_blob_backfill(true);
    let d = t
        .slow
        .put_blob_bytes(Bytes::from_static(b"fetched once"))
        .await
        .expect("put");
    assert_eq!(
        tiered.get_blob_bytes(&d, 64).await.expect("read"),
        Some(b"fetched once".to_vec())
    );
    assert!(t.fast.find_missing(&[d]).await.expect("find").is_empty());
    assert_eq!(tiered.tier_stats()[0].backfilled_bytes, 12);
    let slow_before = t.slow.counts();
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        tiered
            .place_blob(&d, &dir.path().join("b"), Placement::Copy)
            .await
            .expect("place")
    );
    assert_eq!(t.slow.counts(), slow_before, "served by the fast tier");
    assert!(
        tiered
            .get_blob(&Digest::of(b"nowhere"))
            .await
            .expect("a miss")
            .is_none()
    );
}

#[derive(Debug, Default)]
struct ListQueue(std::sync::Mutex<Vec<Key>>);

#[async_trait]
impl UploadQueue for ListQueue {
    async fn enqueue(&self, key: &Key) -> crate::Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::invalid("poisoned"))?
            .push(key.clone());
        Ok(())
    }
}

#[tokio::test]
async fn tiered_queued_tiers_get_keys_and_a_worker_copies_them() {
    let queue = Arc::new(ListQueue::default());
    let q = Arc::clone(&queue);
    let t = two_tiers(move |s| Tier::queued(s, q));
    let k = key("tier-queue");
    let entry = put_with_blob(&t.tiered, &k, b"later").await;
    assert!(t.slow.get_entry(&k).await.expect("get").is_none());
    assert_eq!(
        t.slow.counts().blob_writes,
        0,
        "blob writes skip a queued tier"
    );
    let queued: Vec<Key> = queue.0.lock().expect("lock").clone();
    assert_eq!(queued, vec![k.clone()]);
    // The queue carries entries, so standalone SHA-256 blobs could not reach the slow tier.
    assert!(t.fast.capability().sha256 && t.slow.capability().sha256);
    assert!(!t.tiered.capability().sha256);
    assert_eq!(t.tiered.tier_stats()[1].queued, 1);

    // What the queue's worker does.
    let copied = copy_entry(&*t.fast, &*t.slow, &k, &entry, PutOptions::default())
        .await
        .expect("copy")
        .expect("the fast tier has every blob");
    assert_eq!((copied.blobs, copied.bytes), (1, 5));
    assert_eq!(
        t.slow.get_entry(&k).await.expect("get"),
        Some(entry.clone())
    );

    // Deletes stay with the synchronous tiers.
    assert!(t.tiered.delete(&k).await.expect("delete"));
    assert!(t.fast.get_entry(&k).await.expect("get").is_none());
    assert_eq!(t.slow.get_entry(&k).await.expect("get"), Some(entry));
}

#[test]
fn tiered_refuses_a_queue_with_nothing_to_upload_from() {
    let q: Arc<dyn UploadQueue> = Arc::new(ListQueue::default());
    let err = Tiered::new(vec![Tier::queued(Arc::new(MemoryStore::new()), q)])
        .expect_err("no synchronous tier before the queued one");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(Tiered::new(vec![]).is_err());
}

#[tokio::test]
async fn tiered_goes_on_without_a_remote_that_hangs() {
    let limit = Duration::from_millis(200);
    let local = Arc::new(MemoryStore::new());
    let remote = Arc::new(BestEffort::with_config(
        Broken::new(Fault::Hang),
        BestEffortConfig::new(limit, limit),
    ));
    let tiered =
        Tiered::new(vec![Tier::new(local.clone()), Tier::new(remote.clone())]).expect("two tiers");

    let started = Instant::now();
    assert!(
        tiered
            .get_entry(&key("gone"))
            .await
            .expect("a miss")
            .is_none()
    );
    assert!(started.elapsed() >= limit);

    let started = Instant::now();
    for i in 0..10 {
        let k = key("local");
        let entry = put_with_blob(&tiered, &k, format!("output {i}").as_bytes()).await;
        assert_eq!(tiered.get_entry(&k).await.expect("get"), Some(entry));
        assert!(tiered.get_entry(&key("miss")).await.expect("get").is_none());
    }
    assert!(
        started.elapsed() < limit,
        "the hung remote cost more than one time-out: {:?}",
        started.elapsed()
    );
    assert_eq!(remote.get_ref().calls(), 1);
    assert_eq!(remote.warnings(), 1);
    assert_eq!(local.stats().await.expect("stats").entries, 10);
}

/// Counts the calls to its store's capability (a remote tier opened on first use is opened by
/// that call).
#[derive(Debug, Default)]
struct AskedForCapability {
    inner: MemoryStore,
    asked: AtomicU64,
}

impl std::fmt::Display for AskedForCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("counted")
    }
}

#[async_trait]
impl super::Layered for AskedForCapability {
    type Inner = MemoryStore;
    fn inner(&self) -> &MemoryStore {
        &self.inner
    }
    fn capability(&self) -> crate::Capability {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.inner.capability()
    }
}
crate::impl_store_for_layer!(AskedForCapability);

/// BLAKE3 blob calls through the tiers, served by the first, never ask a slower tier for its
/// capability; a SHA-256 call does (every tier must hold it).
#[tokio::test]
async fn blake3_blob_calls_leave_slower_tiers_alone() {
    let slow = Arc::new(AskedForCapability::default());
    let tiered = Tiered::new(vec![
        Tier::new(Arc::new(MemoryStore::default())),
        Tier::new(slow.clone()),
    ])
    .expect("two tiers");
    let d = tiered
        .put_blob_bytes(Bytes::from_static(b"local"))
        .await
        .expect("put");
    assert!(tiered.find_missing(&[d]).await.expect("find").is_empty());
    assert!(tiered.get_blob(&d).await.expect("get").is_some());
    assert_eq!(slow.asked.load(Ordering::Relaxed), 0);
    let sha = crate::HashFn::Sha256.digest(b"x");
    let _ = tiered.find_missing(&[sha]).await;
    assert!(slow.asked.load(Ordering::Relaxed) > 0);
}

//! The remote-trim checks every [`Bucket`] store runs against its real server (feature
//! `testkit`): budgets hold, recently used entries stay (learned from access records), live
//! blobs are never deleted, blobs a concurrent put relies on survive, an old blob a writer finds
//! present is refreshed, a blob is deleted as stale only if it still is, one trim at a time.
//!
//! Each check opens its own store through `make(prefix, trim_grace)`: a store of the bucket
//! under test rooted at `prefix`, with that grace period. [`trim_tests!`](crate::trim_tests)
//! declares the five as tests.
//!
//! Also for every bucket store's tests: [`BucketHarness`], larder-core's conformance harness over
//! a bucket store, damaging objects through the bucket's own primitives; [`urls_are_checked`],
//! what every store URL parser refuses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use larder_core::testkit::Harness;
use larder_core::{
    Content, Digest, Entry, Key, Output, OutputKind, Store, StoreExt, TrimOptions, TrimReport,
};

use crate::{Bucket, BucketStore, PutObject};

/// Trim options with these budgets.
pub fn budget(max_bytes: Option<u64>, max_entries: Option<u64>) -> TrimOptions {
    let mut o = TrimOptions::default();
    o.max_bytes = max_bytes;
    o.max_entries = max_entries;
    o
}

async fn trim(s: &(impl Store + ?Sized), opts: &TrimOptions) -> TrimReport {
    s.trim(opts, None).await.expect("trim")
}

async fn present(s: &(impl Store + ?Sized), digests: &[Digest]) -> bool {
    s.find_missing(digests).await.expect("find").is_empty()
}

/// Store entry `k{i}` with its own 50 kB blob and `shared` (20 kB); its key and own blob.
pub async fn put_entry(s: &(impl Store + ?Sized), i: usize, shared: Digest) -> (Key, Digest) {
    let d = s
        .put_blob_bytes(Bytes::from(vec![i as u8; 50_000]))
        .await
        .expect("blob");
    let key = Key::new(format!("k{i}")).expect("key");
    let mut e = Entry::new(key.as_str(), "test");
    for (name, digest, size) in [("own", d, 50_000), ("shared", shared, 20_000)] {
        e.outputs.push(Output {
            path: name.into(),
            kind: OutputKind::File {
                content: Content::blob(digest, size),
                executable: false,
            },
        });
    }
    s.put_entry(&key, &e).await.expect("entry");
    (key, d)
}

/// Entry and byte budgets hold; the entries used since they were written stay, with their
/// blobs; a blob a live entry names is kept; a dry run changes nothing.
pub async fn budgets_hold_and_recently_used_entries_and_live_blobs_stay<B: Bucket>(
    make: impl Fn(&str, Duration) -> BucketStore<B>,
) {
    let s = make("trim/budget", Duration::ZERO);
    let shared = s
        .put_blob_bytes(Bytes::from(vec![0xaa; 20_000]))
        .await
        .expect("shared");
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(put_entry(&s, i, shared).await);
    }
    // Entries 0..5 were written first, but are the ones being used.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (k, _) in &keys[..5] {
        assert!(s.get_entry(k).await.expect("get").is_some());
    }
    s.flush().await.expect("flush writes the access record");

    let mut dry = budget(None, Some(5));
    dry.dry_run = true;
    assert_eq!(trim(&s, &dry).await.evicted_entries, 5);
    assert_eq!(s.stats().await.expect("stats").entries, 10);

    let r = trim(&s, &budget(None, Some(5))).await;
    assert_eq!((r.evicted_entries, r.remaining_entries), (5, 5), "{r:?}");
    for (i, (k, own)) in keys.iter().enumerate() {
        let kept = s.get_entry(k).await.expect("get").is_some();
        assert_eq!(kept, i < 5, "entry {i}: recently used ones stay");
        assert_eq!(present(&s, &[*own]).await, i < 5, "blob of entry {i}");
    }
    assert!(
        present(&s, &[shared]).await,
        "a blob still named by a live entry is kept"
    );

    // A byte budget: each entry accounts for its document plus 70 kB of blobs.
    let r = trim(&s, &budget(Some(3 * 75_000), None)).await;
    assert!(r.remaining_bytes <= 3 * 75_000, "{r:?}");
    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.entries, r.remaining_entries);
    assert!(stats.bytes <= 3 * 75_000 + 20_000);
}

/// A blob stored by a writer whose entry has not landed yet survives a trim (grace period).
pub async fn blobs_of_a_put_in_flight_survive<B: Bucket>(
    make: impl Fn(&str, Duration) -> BucketStore<B>,
) {
    let s = make("trim/race", Duration::from_secs(3600));
    let shared = s
        .put_blob_bytes(Bytes::from(vec![1; 20_000]))
        .await
        .expect("shared");
    put_entry(&s, 0, shared).await;
    let pending = s
        .put_blob_bytes(Bytes::from_static(b"the entry naming me is on its way"))
        .await
        .expect("blob");
    assert_eq!(trim(&s, &budget(None, Some(0))).await.evicted_entries, 1);
    assert!(
        present(&s, &[pending, shared]).await,
        "blobs younger than the grace period are kept"
    );
}

/// A blob older than half the grace period that a writer finds present (and so does not upload)
/// is refreshed, and outlives the next trim.
pub async fn an_old_blob_a_writer_finds_present_outlives_the_next_trim<B: Bucket>(
    make: impl Fn(&str, Duration) -> BucketStore<B>,
) {
    // Grace 4 s; timestamps may be whole seconds, hence the margins below.
    let s = make("trim/reuse", Duration::from_secs(4));
    let shared = s
        .put_blob_bytes(Bytes::from(vec![2; 20_000]))
        .await
        .expect("shared");
    put_entry(&s, 0, shared).await;
    let reused = s
        .put_blob_bytes(Bytes::from_static(b"an output many builds produce"))
        .await
        .expect("blob");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The writer's entry is still to come.
    assert!(present(&s, &[reused]).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Unrefreshed, the blob would now be past the grace period, unreferenced, and collected.
    assert_eq!(trim(&s, &budget(None, Some(0))).await.evicted_entries, 1);
    assert!(
        present(&s, &[reused]).await,
        "the blob the writer relies on was collected"
    );
}

/// A trim deletes an unreferenced blob it listed as older than its cutoff only if the blob
/// still is ([`Bucket::delete_stale`]): one a writer refreshed or stored again after the listing
/// stays. The primitive is called as a trim that listed the blob long before would call it.
pub async fn a_blob_is_deleted_as_stale_only_if_it_still_is<B: Bucket>(
    make: impl Fn(&str, Duration) -> BucketStore<B>,
) {
    let s = make("trim/stale", Duration::from_secs(3600));
    let blob = s
        .put_blob_bytes(Bytes::from_static(b"stored again since the trim listed it"))
        .await
        .expect("blob");
    let (key, now) = (s.blob_key(&blob), larder_core::entry::now_ms());
    // Cutoffs a minute off: services may keep whole seconds.
    let stale = |cutoff_ms| s.backend().delete_stale(&key, cutoff_ms);
    stale(now - 60_000).await.expect("delete_stale");
    assert!(
        present(&s, &[blob]).await,
        "a blob newer than the cutoff was deleted"
    );
    stale(now + 60_000).await.expect("delete_stale");
    assert!(
        !present(&s, &[blob]).await,
        "a blob older than the cutoff stayed"
    );
}

/// A live lease held by another trimmer makes a trim skip; an expired one is taken over, and
/// released after the trim.
pub async fn one_trim_at_a_time<B: Bucket>(make: impl Fn(&str, Duration) -> BucketStore<B>) {
    let s = make("trim/lock", Duration::ZERO);
    let lock = format!("{}trim/lock", s.backend().prefix());
    let far = larder_core::entry::now_ms() + 600_000;
    s.backend()
        .put(
            &lock,
            Bytes::from(format!("1 {far}\n")),
            PutObject::default(),
        )
        .await
        .expect("lease");
    assert!(trim(&s, &budget(None, Some(0))).await.skipped_locked);
    s.backend()
        .put(&lock, Bytes::from_static(b"1 1000\n"), PutObject::default())
        .await
        .expect("expired lease");
    let r = trim(&s, &budget(None, Some(0))).await;
    assert!(!r.skipped_locked, "{r:?}");
    assert!(
        s.backend().get(&lock, 4096).await.expect("get").is_none(),
        "the lease is released after the trim"
    );
}

/// `parse` (a store's URL parser) takes `good`, and refuses as invalid input what every bucket
/// store refuses: another scheme, and bad values of the shared parameters, of `part_size` and
/// of the store's boolean parameter `flag` (each added to `good`, which has no query). Then
/// each of the store's own `bad` URLs.
pub fn urls_are_checked<T>(
    parse: impl Fn(&str) -> larder_core::Result<T>,
    good: &str,
    flag: &str,
    bad: &[&str],
) {
    if let Err(e) = parse(good) {
        panic!("{good}: {e}");
    }
    let (_, rest) = good.split_once("://").expect("a URL");
    let shared = [
        "trim_grace=soon",
        "concurrency=many",
        "part_size=1k",
        "request_timeout=-1",
    ];
    let shared = shared.iter().map(|q| format!("{good}?{q}"));
    let flag = format!("{good}?{flag}=maybe");
    let all = [format!("nosuch://{rest}"), flag].into_iter().chain(shared);
    for url in all.chain(bad.iter().map(|u| u.to_string())) {
        match parse(&url) {
            Ok(_) => panic!("{url}: accepted"),
            Err(e) => assert_eq!(e.kind(), larder_core::ErrorKind::InvalidInput, "{url}: {e}"),
        }
    }
}

/// `parse` refuses a parameter it does not know (added to `good`, which has no query), naming it.
pub fn unknown_parameters_are_refused<T>(
    parse: impl Fn(&str) -> larder_core::Result<T>,
    good: &str,
) {
    match parse(&format!("{good}?nope=1")) {
        Ok(_) => panic!("{good}?nope=1: accepted"),
        Err(e) => assert!(e.to_string().contains("unknown parameter `nope`"), "{e}"),
    }
}

/// The four trim checks above as `#[tokio::test]`s. `$start` is the test server, an `Option`
/// (`None`: its crate already said why the tests skip); `$maker(&server)` is a check's `make`.
#[macro_export]
macro_rules! trim_tests {
    ($start:expr, $maker:expr) => {
        $crate::trim_tests!(@one $start, $maker,
            budgets_hold_and_recently_used_entries_and_live_blobs_stay,
            blobs_of_a_put_in_flight_survive,
            an_old_blob_a_writer_finds_present_outlives_the_next_trim,
            a_blob_is_deleted_as_stale_only_if_it_still_is,
            one_trim_at_a_time);
    };
    (@one $start:expr, $maker:expr, $($check:ident),+) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $check() {
            let Some(server) = $start else {
                return;
            };
            $crate::testkit::$check($maker(&server)).await;
        }
    )+};
}

/// larder-core's conformance harness over a bucket store, damaging its objects through the
/// bucket's own primitives (read, flip two bytes, write back plain). Run it with
/// `larder_core::testkit::Suites::store`, or `run_all`.
pub struct BucketHarness<B: Bucket> {
    store: Arc<BucketStore<B>>,
    at: Option<EndpointFn<B>>,
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<B: Bucket> std::fmt::Debug for BucketHarness<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketHarness")
            .field("store", &self.store.to_string())
            .field("at_endpoint", &self.at.is_some())
            .finish()
    }
}

type EndpointFn<B> = Box<dyn Fn(SocketAddr) -> BucketStore<B> + Send + Sync>;

impl<B: Bucket> BucketHarness<B> {
    /// The harness over `store`.
    pub fn new(store: BucketStore<B>) -> Self {
        BucketHarness {
            store: Arc::new(store),
            at: None,
            _keep: None,
        }
    }

    /// How to open a store of this bucket type at another address (the suite's dead and hanging
    /// endpoint checks), with time-outs of a few seconds.
    pub fn at_endpoint(
        mut self,
        open: impl Fn(SocketAddr) -> BucketStore<B> + Send + Sync + 'static,
    ) -> Self {
        self.at = Some(Box::new(open));
        self
    }

    /// Keep `guard` (the test server) alive as long as the harness.
    pub fn keep(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._keep = Some(Box::new(guard));
        self
    }

    /// The store under test.
    pub fn bucket_store(&self) -> Arc<BucketStore<B>> {
        Arc::clone(&self.store)
    }

    async fn damage(&self, key: String) -> bool {
        let bucket = self.store.backend();
        let Ok(Some(bytes)) = bucket.get(&key, u64::MAX).await else {
            return false;
        };
        let mut bytes = bytes.to_vec();
        if bytes.is_empty() {
            return false;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        bytes[0] ^= 0xff;
        let put = bucket
            .put(&key, Bytes::from(bytes), PutObject::default())
            .await;
        put.expect("overwrite");
        true
    }
}

#[async_trait]
impl<B: Bucket> Harness for BucketHarness<B> {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.damage(self.store.blob_key(digest)).await
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.damage(self.store.entry_key(key)).await
    }

    fn large_blob_bytes(&self) -> u64 {
        // Up, down and placed over loopback: 256 MiB keeps CI quick and still catches any
        // store that buffers a whole blob.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }

    fn at_endpoint(&self, addr: SocketAddr) -> Option<Arc<dyn Store>> {
        let open = self.at.as_ref()?;
        Some(Arc::new(open(addr)))
    }
}

//! Trimming: budgets, LRU order, dry runs, the lock, the blob grace window, policies.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru};
use larder_core::{Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};

/// Bytes one test entry accounts for: its entry file (one block) and a 12 KiB blob.
const ENTRY_BYTES: u64 = 4096 + 12288;

/// `n` entries `e/0..n`, each with its own blob, put in order with distinct access times and
/// blobs aged out of every grace window.
async fn fill(store: &FsStore, n: usize) {
    for i in 0..n {
        put_blob_entry(
            store,
            &key(&format!("e/{i}")),
            &random_bytes(&format!("e{i}"), 12_000),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    store.flush().await.unwrap();
    age_blobs(store.root(), Duration::from_secs(7200));
}

fn opts() -> TrimOptions {
    TrimOptions::default()
}

async fn present(store: &FsStore, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut quiet = larder_core::GetOptions::default();
    quiet.record_access = false;
    for i in 0..n {
        if store
            .get_entry_opts(&key(&format!("e/{i}")), quiet)
            .await
            .unwrap()
            .is_some()
        {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn trims_by_bytes_in_lru_order_keeping_recently_read_entries() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 20).await;
    assert_eq!(store.stats().await.unwrap().bytes, 20 * ENTRY_BYTES);
    // Read the three oldest: they become the most recently used.
    for i in 0..3 {
        store
            .get_entry(&key(&format!("e/{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    let mut o = opts();
    o.max_bytes = Some(12 * ENTRY_BYTES);
    let done = Arc::new(AtomicU64::new(0));
    let d2 = Arc::clone(&done);
    let progress: larder_core::store::ProgressFn = Arc::new(move |n, total| {
        assert!(n <= total);
        d2.store(n, Ordering::Relaxed);
    });
    let r = store.trim(&o, Some(progress)).await.unwrap();
    assert_eq!(r.evicted_entries, 8);
    assert_eq!(r.evicted_bytes, 8 * ENTRY_BYTES);
    assert_eq!(
        (r.remaining_entries, r.remaining_bytes),
        (12, 12 * ENTRY_BYTES)
    );
    assert!(!r.skipped_locked && !r.dry_run);
    assert_eq!(done.load(Ordering::Relaxed), 8);
    let mut expected: Vec<usize> = (0..3).collect();
    expected.extend(11..20);
    assert_eq!(present(&store, 20).await, expected);
    // The evicted entries' blobs are gone from disk too; the stats match the disk.
    assert_eq!(count_files(&store.root().join("blobs")), 12);
    assert_eq!(store.stats().await.unwrap().bytes, 12 * ENTRY_BYTES);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_found_by_an_existence_check_count_as_used_but_not_as_hits() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 10).await;
    let hits_before = store.stats().await.unwrap().hits;
    // Ask about the three oldest (and one that does not exist), as FindMissingBlobs does.
    let asked: Vec<_> = ["e/0", "e/1", "e/2", "nope"]
        .iter()
        .map(|k| key(k))
        .collect();
    assert_eq!(
        store.find_missing_entries(&asked).await.unwrap(),
        vec![key("nope")]
    );
    store.flush().await.unwrap();
    assert_eq!(store.stats().await.unwrap().hits, hits_before);
    let mut o = opts();
    o.max_entries = Some(5);
    store.trim(&o, None).await.unwrap();
    assert_eq!(present(&store, 10).await, vec![0, 1, 2, 8, 9]);
}

#[tokio::test(flavor = "multi_thread")]
async fn trims_by_entries_and_dry_run_changes_nothing() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 10).await;
    let mut o = opts();
    o.max_entries = Some(6);
    o.dry_run = true;
    let dry = store.trim(&o, None).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        (dry.evicted_entries, dry.evicted_bytes),
        (4, 4 * ENTRY_BYTES)
    );
    assert_eq!(dry.remaining_entries, 6);
    assert_eq!(present(&store, 10).await.len(), 10);
    assert_eq!(store.stats().await.unwrap().entries, 10);
    o.dry_run = false;
    let real = store.trim(&o, None).await.unwrap();
    assert_eq!(
        (real.evicted_entries, real.evicted_bytes),
        (4, 4 * ENTRY_BYTES)
    );
    assert_eq!(present(&store, 10).await, (4..10).collect::<Vec<_>>());
    // Nothing over budget: nothing to do.
    let again = store.trim(&o, None).await.unwrap();
    assert_eq!(again.evicted_entries, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_blobs_stay_until_their_last_entry_goes() {
    let (_dir, store) = temp_store(FsConfig::default());
    let shared = random_bytes("shared", 12_000);
    let (_, d) = put_blob_entry(&store, &key("old"), &shared).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    put_blob_entry(&store, &key("new"), &shared).await;
    store.flush().await.unwrap();
    age_blobs(store.root(), Duration::from_secs(7200));
    assert_eq!(store.stats().await.unwrap().bytes, 2 * 4096 + 12288);
    let mut o = opts();
    o.max_entries = Some(1);
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!((r.evicted_entries, r.evicted_bytes), (1, 4096));
    assert!(store.find_missing(&[d]).await.unwrap().is_empty());
    o.max_entries = Some(0);
    age_blobs(store.root(), Duration::from_secs(7200));
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!((r.evicted_entries, r.evicted_bytes), (1, 4096 + 12288));
    assert_eq!(store.find_missing(&[d]).await.unwrap(), vec![d]);
    assert_eq!(store.stats().await.unwrap().bytes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn recently_touched_blobs_survive_within_the_grace_window() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 2).await;
    let e0 = store.get_entry(&key("e/0")).await.unwrap().unwrap();
    let d0 = e0.blob_digests()[0];
    let e1 = store.get_entry(&key("e/1")).await.unwrap().unwrap();
    let d1 = e1.blob_digests()[0];
    // A concurrent put deduplicates onto blob 0: find_missing refreshes it.
    assert!(store.find_missing(&[d0]).await.unwrap().is_empty());
    let mut o = opts();
    o.max_entries = Some(0);
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!(r.evicted_entries, 2);
    // Blob 0 is kept (its bytes count as freed towards the goal, but are not reported).
    assert_eq!(r.evicted_bytes, 2 * 4096 + 12288);
    assert!(
        store.find_missing(&[d0]).await.unwrap().is_empty(),
        "touched blob removed"
    );
    assert_eq!(store.find_missing(&[d1]).await.unwrap(), vec![d1]);
    // Once old, a later trim collects it as unreferenced.
    age_blobs(store.root(), Duration::from_secs(7200));
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!((r.evicted_entries, r.evicted_bytes), (0, 12288));
    assert_eq!(store.find_missing(&[d0]).await.unwrap(), vec![d0]);
    assert_eq!(store.stats().await.unwrap().bytes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_makes_trim_skip_unless_asked_to_wait() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 3).await;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(store.root().join("trim.lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut o = opts();
    o.max_entries = Some(0);
    let r = store.trim(&o, None).await.unwrap();
    assert!(r.skipped_locked);
    assert_eq!((r.evicted_entries, r.remaining_entries), (0, 3));
    o.wait_for_lock = true;
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(lock);
    });
    let r = store.trim(&o, None).await.unwrap();
    assert!(!r.skipped_locked);
    assert_eq!(r.evicted_entries, 3);
    releaser.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn free_space_head_room_evicts_everything_it_can() {
    let (_dir, store) = temp_store(FsConfig::default());
    fill(&store, 5).await;
    let mut o = opts();
    // No disk has this much free: the goal cannot be met, so every entry goes.
    o.min_free_bytes = Some(u64::MAX / 2);
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!(r.evicted_entries, 5);
    assert_eq!(r.remaining_bytes, 0);
    // A head room that is already there evicts nothing.
    fill(&store, 2).await;
    o.min_free_bytes = Some(1);
    assert_eq!(store.trim(&o, None).await.unwrap().evicted_entries, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_temporary_files_are_swept() {
    let (_dir, store) = temp_store(FsConfig::default());
    let tmp = store.root().join("tmp");
    let (old, new) = (tmp.join("crashed-writer"), tmp.join("writing-now"));
    std::fs::write(&old, b"partial").unwrap();
    std::fs::write(&new, b"partial").unwrap();
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    store.trim(&opts(), None).await.unwrap();
    assert!(!old.exists());
    assert!(new.exists());
}

/// Evicts the most recently used first, and records what it was asked.
#[derive(Debug, Default)]
struct Mru {
    goals: Mutex<Vec<EvictionGoal>>,
}

impl EvictionPolicy for Mru {
    fn name(&self) -> &str {
        "mru"
    }
    fn select_victims(
        &self,
        c: &Candidates,
        goal: EvictionGoal,
        _now_ms: u64,
    ) -> larder_core::Result<Vec<usize>> {
        self.goals.lock().unwrap().push(goal);
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(c.last_access_ms[i]));
        Ok(order)
    }
}

/// Always fails.
#[derive(Debug)]
struct Broken;

impl EvictionPolicy for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn select_victims(
        &self,
        c: &Candidates,
        _: EvictionGoal,
        _: u64,
    ) -> larder_core::Result<Vec<usize>> {
        // An invalid answer: the same victim twice.
        Ok(vec![0; c.len().max(2)])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_policies_choose_victims_and_failures_fall_back_to_lru() {
    let mru = Arc::new(Mru::default());
    let (_a, store) = temp_store(FsConfig::default().with_eviction(Some(mru.clone())));
    fill(&store, 6).await;
    let mut o = opts();
    o.max_entries = Some(4);
    let r = store.trim(&o, None).await.unwrap();
    assert_eq!(r.evicted_entries, 2);
    assert_eq!(present(&store, 6).await, vec![0, 1, 2, 3]);
    assert_eq!(mru.goals.lock().unwrap()[0].entries, 2);

    let (_b, lru) = temp_store(FsConfig::default().with_eviction(Some(Arc::new(Lru))));
    fill(&lru, 6).await;
    lru.get_entry(&key("e/0")).await.unwrap();
    let r = lru.trim(&o, None).await.unwrap();
    assert_eq!(r.evicted_entries, 2);
    assert_eq!(present(&lru, 6).await, vec![0, 3, 4, 5]);

    let (_c, broken) = temp_store(FsConfig::default().with_eviction(Some(Arc::new(Broken))));
    fill(&broken, 6).await;
    let r = broken.trim(&o, None).await.unwrap();
    assert_eq!(r.evicted_entries, 2);
    assert_eq!(present(&broken, 6).await, vec![2, 3, 4, 5]);
}

/// Picks only the least recently used entry, whatever the goal.
#[derive(Debug)]
struct Stingy;

impl EvictionPolicy for Stingy {
    fn name(&self) -> &str {
        "stingy"
    }
    fn select_victims(
        &self,
        c: &Candidates,
        _: EvictionGoal,
        _: u64,
    ) -> larder_core::Result<Vec<usize>> {
        Ok((0..c.len())
            .min_by_key(|&i| c.last_access_ms[i])
            .into_iter()
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lru_completes_a_policy_that_falls_short_in_dry_runs_too() {
    let (_dir, store) = temp_store(FsConfig::default().with_eviction(Some(Arc::new(Stingy))));
    fill(&store, 6).await;
    let mut o = opts();
    o.max_entries = Some(3);
    o.dry_run = true;
    let dry = store.trim(&o, None).await.unwrap();
    assert_eq!(
        (dry.evicted_entries, dry.evicted_bytes),
        (3, 3 * ENTRY_BYTES)
    );
    o.dry_run = false;
    let real = store.trim(&o, None).await.unwrap();
    assert_eq!(
        (real.evicted_entries, real.evicted_bytes),
        (3, 3 * ENTRY_BYTES)
    );
    assert_eq!(present(&store, 6).await, vec![3, 4, 5]);
}

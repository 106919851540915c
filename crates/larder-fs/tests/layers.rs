//! The store layers of `larder_core::layer` over real filesystem stores: each layer (and the
//! usual stacks) runs the shared conformance suite, one trial per check (`retry::…`,
//! `tiered_fs_fs::…`), and the tiered store's backfill and streaming are checked on disk.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use larder_core::admission::{AdmissionCandidate, AdmissionPolicy};
use larder_core::layer::{Admission, BestEffort, Progress, ReadOnly, Retry, Tier, Tiered};
use larder_core::testkit::{Harness, Suites};
use larder_core::{
    Content, Digest, Entry, Key, Output, OutputKind, Placement, Store, StoreExt, TrimOptions,
};
use larder_fs::{FsConfig, FsStore};

/// A filesystem store in a temporary directory.
struct Disk {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<FsStore>,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("cache");
        let store = Arc::new(FsStore::open(&root, FsConfig::default()).expect("open store"));
        Disk {
            _dir: dir,
            root,
            store,
        }
    }
}

/// A layered store over filesystem stores; damage goes to every one of them.
struct Layers {
    store: Arc<dyn Store>,
    disks: Vec<Disk>,
    large: u64,
}

#[async_trait]
impl Harness for Layers {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        let mut any = false;
        for d in &self.disks {
            any |= larder_fs::testkit::corrupt_blob(&d.root, digest);
        }
        any
    }
    async fn corrupt_entry(&self, key: &Key) -> bool {
        let mut any = false;
        for d in &self.disks {
            any |= larder_fs::testkit::corrupt_entry(&d.root, key);
        }
        any
    }
    fn large_blob_bytes(&self) -> u64 {
        self.large
    }
}

/// One disk under `wrap`. The large-blob check is the plain fs suite's business; a layer only
/// has to stream, which 64 MiB shows as well.
fn over_one(wrap: impl FnOnce(Arc<FsStore>) -> Arc<dyn Store>) -> Layers {
    let disk = Disk::new();
    Layers {
        store: wrap(Arc::clone(&disk.store)),
        disks: vec![disk],
        large: 64 << 20,
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

fn key(name: &str) -> Key {
    Key::new(format!("fs-layers/{name}/{}", std::process::id())).expect("a valid key")
}

/// A restore through the tiers of an entry only the slow disk holds: the fast disk is
/// backfilled with the entry and its blob, and the next restore is served by the fast disk.
async fn tiered_backfills_a_fs_tier() {
    let (fast, slow) = (Disk::new(), Disk::new());
    let k = key("backfill");
    let bytes = Bytes::from(vec![42u8; 5 << 20]);
    let digest = slow
        .store
        .put_blob_bytes(bytes.clone())
        .await
        .expect("put blob");
    let mut entry = Entry::new(k.as_str(), "fs-layers");
    entry.outputs.push(Output {
        path: "out.bin".into(),
        kind: OutputKind::File {
            content: Content::blob(digest, bytes.len() as u64),
            executable: false,
        },
    });
    slow.store.put_entry(&k, &entry).await.expect("put entry");

    let slow_counted = Arc::new(Progress::new(slow.store.clone()));
    let tiered = Tiered::new(vec![
        Tier::new(fast.store.clone()),
        Tier::new(slow_counted.clone()),
    ])
    .expect("two tiers");
    assert_eq!(
        tiered.get_entry(&k).await.expect("get"),
        Some(entry.clone())
    );
    assert_eq!(fast.store.get_entry(&k).await.expect("get"), Some(entry));
    assert!(
        fast.store
            .find_missing(&[digest])
            .await
            .expect("find")
            .is_empty()
    );
    assert_eq!(tiered.tier_stats()[0].backfilled_bytes, 5 << 20);

    let before = slow_counted.counts();
    assert!(tiered.get_entry(&k).await.expect("get").is_some());
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out.bin");
    assert!(
        tiered
            .place_blob(&digest, &dest, Placement::Copy)
            .await
            .expect("place")
    );
    assert_eq!(std::fs::read(&dest).expect("read").len(), 5 << 20);
    assert_eq!(
        slow_counted.counts(),
        before,
        "a fast hit touched the slow tier"
    );
}

/// Reads through a read-only fs store are the store's own; writes are refused.
async fn read_only_over_fs() {
    let disk = Disk::new();
    let k = key("ro");
    let digest = disk
        .store
        .put_blob_bytes(Bytes::from_static(b"kept"))
        .await
        .expect("put");
    let ro = ReadOnly::new(disk.store.clone());
    assert_eq!(
        ro.get_blob_bytes(&digest, 16).await.expect("read"),
        Some(b"kept".to_vec())
    );
    let err = ro
        .put_entry(&k, &Entry::new(k.as_str(), "fs-layers"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(!ro.capability().trim && ro.capability().local_files);
}

/// Each tier is trimmed to its own budget: the slow tier to the one it was given, the fast
/// one to the trim call's; a tier without a budget of its own is left alone.
async fn each_tier_trimmed_to_its_own_budget() {
    let (fast, slow, third) = (Disk::new(), Disk::new(), Disk::new());
    let mut slow_budget = TrimOptions::default();
    slow_budget.max_entries = Some(2);
    let tiered = Tiered::new(vec![
        Tier::new(fast.store.clone()),
        Tier::new(slow.store.clone()).with_budget(slow_budget),
        Tier::new(third.store.clone()),
    ])
    .expect("three tiers");
    for i in 0..5 {
        let k = key(&format!("budget-{i}"));
        let mut entry = Entry::new(k.as_str(), "fs-layers");
        entry.stdout = Some(Content::inline(vec![i as u8; 100]));
        tiered.put_entry(&k, &entry).await.expect("put");
    }
    let mut opts = TrimOptions::default();
    opts.max_entries = Some(4);
    let rows = tiered.trim_tiers(&opts, None).await;
    let left: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| {
            let report = r.result.as_ref().expect("trimmed");
            (report.evicted_entries, report.remaining_entries)
        })
        .collect();
    assert_eq!(left, vec![(1, 4), (3, 2)], "{rows:?}");
    assert_eq!(rows[1].budget.max_entries, Some(2));
    assert_eq!(third.store.stats().await.expect("stats").entries, 5);

    // Without a budget for the first tier, only the slow one (now within budget) is trimmed.
    let rows = tiered.trim_tiers(&TrimOptions::default(), None).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, slow.store.to_string());
    assert_eq!(rows[0].result.as_ref().expect("trim").evicted_entries, 0);
}

/// Two disks as tiers; the large blob (512 MiB) streams to both at once, and the suite's memory
/// bound (256 MiB) would catch a tier fed from a buffered copy.
fn tiered_over_two_fs_stores() -> Layers {
    let (fast, slow) = (Disk::new(), Disk::new());
    let tiered = Tiered::new(vec![
        Tier::new(fast.store.clone()),
        Tier::new(Arc::new(BestEffort::new(slow.store.clone()))),
    ])
    .expect("two tiers");
    Layers {
        store: Arc::new(tiered),
        disks: vec![fast, slow],
        large: 512 << 20,
    }
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("retry", || async {
            Ok(over_one(|s| Arc::new(Retry::new(s))))
        })
        .store("best_effort_retry", || async {
            Ok(over_one(|s| Arc::new(BestEffort::new(Retry::new(s)))))
        })
        .store("admission", || async {
            Ok(over_one(|s| {
                Arc::new(Admission::new(s, Arc::new(AdmitAll)))
            }))
        })
        .store("progress", || async {
            Ok(over_one(|s| Arc::new(Progress::new(s))))
        })
        .store("tiered_fs_fs", || async { Ok(tiered_over_two_fs_stores()) })
        .test("tiered_backfills_a_fs_tier", tiered_backfills_a_fs_tier)
        .test("read_only_over_fs", read_only_over_fs)
        .test(
            "each_tier_trimmed_to_its_own_budget",
            each_tier_trimmed_to_its_own_budget,
        )
        .run()
}

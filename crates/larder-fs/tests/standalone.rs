//! Standalone (SHA-256) blobs: kept for themselves, not only while an entry names them. Trims
//! evict them by budget in LRU order and never sweep them as unreferenced; reads trust them
//! once verified; the index survives a rebuild with them.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use larder_core::{Digest, ErrorKind, HashFn, Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};

/// Blocks a 12,000-byte blob takes.
const BLOB_BYTES: u64 = 12288;

/// Store `bytes` as a SHA-256 blob.
async fn put_sha256(store: &FsStore, bytes: &[u8]) -> Digest {
    store
        .put_blob_bytes_as(HashFn::Sha256, Bytes::copy_from_slice(bytes))
        .await
        .expect("put a SHA-256 blob")
}

/// Set every file under `dir`'s fan-out directories `age` into the past.
fn age_files(dir: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    for sub in std::fs::read_dir(dir).expect("dir").flatten() {
        for f in std::fs::read_dir(sub.path())
            .expect("fan-out dir")
            .flatten()
        {
            let file = std::fs::File::open(f.path()).expect("open");
            file.set_modified(when).expect("set mtime");
        }
    }
}

async fn missing(store: &FsStore, ds: &[Digest]) -> Vec<Digest> {
    store.find_missing(ds).await.expect("find_missing")
}

#[tokio::test(flavor = "multi_thread")]
async fn sha256_blobs_are_trimmed_by_budget_and_never_swept_as_orphans() {
    let (_dir, store) = temp_store(FsConfig::default());
    let mut sha = Vec::new();
    for i in 0..3 {
        sha.push(put_sha256(&store, &random_bytes(&format!("sha{i}"), 12_000)).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A BLAKE3 blob no entry names: an orphan for the sweep.
    let orphan = store
        .put_blob_bytes(Bytes::from(random_bytes("orphan", 12_000)))
        .await
        .expect("put");
    store.flush().await.expect("flush");
    let s = store.stats().await.expect("stats");
    assert_eq!((s.entries, s.bytes), (3, 4 * BLOB_BYTES));
    let sha_dir = store.root().join("sha256");
    assert_eq!(
        count_files(&sha_dir),
        3,
        "SHA-256 blobs in their own directory"
    );
    // Nothing lists them: a listing is of entries.
    assert_eq!(store.list().count().await, 0);

    // Old enough for the orphan sweep: the BLAKE3 orphan goes, the SHA-256 blobs stay.
    age_blobs(store.root(), Duration::from_secs(7200));
    age_files(&sha_dir, Duration::from_secs(7200));
    let r = store
        .trim(&TrimOptions::default(), None)
        .await
        .expect("trim");
    assert_eq!((r.evicted_entries, r.evicted_bytes), (0, BLOB_BYTES));
    assert_eq!(missing(&store, &[orphan]).await, vec![orphan]);
    // (Counted on disk: a find_missing would refresh them all.)
    assert_eq!(count_files(&sha_dir), 3);

    // Reading the oldest moves it up the eviction order; a byte budget then evicts the next.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        store
            .get_blob_bytes(&sha[0], 1 << 20)
            .await
            .expect("read")
            .is_some()
    );
    store.flush().await.expect("flush");
    let mut budget = TrimOptions::default();
    budget.max_bytes = Some(2 * BLOB_BYTES);
    let r = store.trim(&budget, None).await.expect("trim");
    assert_eq!((r.evicted_entries, r.evicted_bytes), (1, BLOB_BYTES));
    assert_eq!(
        (r.remaining_entries, r.remaining_bytes),
        (2, 2 * BLOB_BYTES)
    );
    assert_eq!(missing(&store, &sha).await, vec![sha[1]]);
    assert_eq!(count_files(&sha_dir), 2);

    // A rebuilt index finds them again from their files.
    store.rebuild_index().await.expect("rebuild");
    let s = store.stats().await.expect("stats");
    assert_eq!((s.entries, s.bytes), (2, 2 * BLOB_BYTES));
    let mut all = TrimOptions::default();
    all.max_entries = Some(0);
    let r = store.trim(&all, None).await.expect("trim");
    assert_eq!(r.evicted_entries, 2);
    assert_eq!(missing(&store, &sha).await, sha);
    assert_eq!(store.stats().await.expect("stats").bytes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_blob_is_trusted_once_verified_and_removed_when_damaged() {
    let (_dir, store) = temp_store(FsConfig::default());
    let bytes = random_bytes("trusted", 200_000);
    let d = put_sha256(&store, &bytes).await;
    let before = store.blob_reads();
    for _ in 0..2 {
        let got = store.get_blob_bytes(&d, 1 << 20).await.expect("read");
        assert_eq!(got.as_deref(), Some(&bytes[..]));
    }
    let after = store.blob_reads();
    assert_eq!(after.trusted, before.trusted + 2, "{after:?}");
    assert_eq!(after.hashed_bytes, before.hashed_bytes);

    // The same 32 bytes as a BLAKE3 digest name nothing.
    let alias = Digest::blake3(*d.as_bytes());
    assert_eq!(missing(&store, &[d, alias]).await, vec![alias]);

    // Damaged on disk: the read fails as corrupt, the blob and its index row go.
    assert!(larder_fs::testkit::corrupt_blob(store.root(), &d));
    let read = store.get_blob(&d).await.expect("open");
    if let Some(read) = read {
        let items: Vec<_> = read.stream.collect().await;
        let last = items.last().expect("an item");
        assert_eq!(
            last.as_ref().expect_err("corrupt").kind(),
            ErrorKind::Corrupt
        );
    }
    assert_eq!(missing(&store, &[d]).await, vec![d]);
    store.flush().await.expect("flush");
    let s = store.stats().await.expect("stats");
    assert_eq!((s.entries, s.bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_and_placed_sha256_blobs_verify_with_sha256() {
    let mut config = FsConfig::default();
    config.compression = larder_fs::Compression::Level(3);
    let (dir, store) = temp_store(config);
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 7) as u8).collect();
    let d = put_sha256(&store, &bytes).await;
    let zst = store
        .root()
        .join("sha256")
        .join(&d.to_hex()[..2])
        .join(format!("{}.zst", d.to_hex()));
    assert!(zst.exists(), "stored compressed");
    let got = store.get_blob_bytes(&d, 8 << 20).await.expect("read");
    assert!(got.as_deref() == Some(&bytes[..]));
    for how in [
        larder_core::Placement::Copy,
        larder_core::Placement::Hardlink,
    ] {
        let dest = dir.path().join(format!("placed-{how:?}"));
        assert!(store.place_blob(&d, &dest, how).await.expect("place"));
        assert!(std::fs::read(&dest).expect("read placed") == bytes);
    }
    let (_dir2, raw) = temp_store(FsConfig::default());
    let big = random_bytes("big", 3_000_000);
    let d = put_sha256(&raw, &big).await;
    let dest = dir.path().join("placed-raw");
    assert!(
        raw.place_blob(&d, &dest, larder_core::Placement::Copy)
            .await
            .expect("place")
    );
    assert!(std::fs::read(&dest).expect("read placed") == big);
}

//! The in-memory cache of small decoded entries: a changed, replaced or removed entry file is
//! not answered from memory once the recheck interval has passed (at once with a zero interval).

mod common;

use std::time::Duration;

use common::*;
use larder_core::{Store, StoreExt};
use larder_fs::FsConfig;

/// Longer than the file system's timestamp granularity, so a later write gets a later ctime.
const TICK: Duration = Duration::from_millis(30);

/// A store with the given recheck interval holding one inline entry under `hot`, read once.
async fn stored(
    recheck: Duration,
    value: &[u8],
) -> (
    tempfile::TempDir,
    larder_fs::FsStore,
    larder_core::Key,
    larder_core::Entry,
) {
    let (dir, store) = temp_store(FsConfig::default().with_hot_entry_recheck(recheck));
    let k = key("hot");
    let e = inline_entry(&k, value);
    store.put_entry(&k, &e).await.unwrap();
    assert_eq!(store.get_entry(&k).await.unwrap(), Some(e.clone()));
    (dir, store, k, e)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_file_changed_in_place_is_read_again_and_found_corrupt() {
    let (_dir, store, k, e) = stored(Duration::ZERO, b"first value").await;
    for _ in 0..2 {
        assert_eq!(store.get_entry(&k).await.unwrap(), Some(e.clone()));
    }
    std::thread::sleep(TICK);
    // Same length, flipped byte, written in place: the cached copy must not hide it.
    let path = entry_file(store.root(), &k);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(store.get_entry(&k).await.unwrap(), None);
    assert!(!path.exists(), "the corrupt entry file is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_or_removed_entry_is_not_answered_from_memory() {
    let (_dir, store, k, _first) = stored(Duration::ZERO, b"first").await;
    // Another process (a second handle) overwrites the entry, then removes it.
    let other = larder_fs::FsStore::open(store.root(), FsConfig::default()).unwrap();
    std::thread::sleep(TICK);
    let second = inline_entry(&k, b"other");
    other.put_entry(&k, &second).await.unwrap();
    assert_eq!(store.get_entry(&k).await.unwrap(), Some(second));
    assert!(other.delete(&k).await.unwrap());
    assert_eq!(store.get_entry(&k).await.unwrap(), None);
    // With the cache off, the same sequence reads the file every time.
    let (_d2, cold) = temp_store(FsConfig::default().with_hot_entry_bytes(0));
    let third = inline_entry(&k, b"third");
    cold.put_entry(&k, &third).await.unwrap();
    assert_eq!(cold.get_entry(&k).await.unwrap(), Some(third));
}

#[tokio::test(flavor = "multi_thread")]
async fn another_process_removing_an_entry_is_seen_after_the_recheck_interval() {
    let recheck = Duration::from_millis(300);
    let (_dir, store, k, e) = stored(recheck, b"value").await;
    let other = larder_fs::FsStore::open(store.root(), FsConfig::default()).unwrap();
    assert!(other.delete(&k).await.unwrap());
    // Within the interval the verified copy may still be served; after it, never.
    std::thread::sleep(recheck + TICK);
    assert_eq!(store.get_entry(&k).await.unwrap(), None);
    // An overwrite and a delete through the same store are seen at once.
    store.put_entry(&k, &e).await.unwrap();
    assert_eq!(store.get_entry(&k).await.unwrap(), Some(e));
    let newer = inline_entry(&k, b"newer");
    store.put_entry(&k, &newer).await.unwrap();
    assert_eq!(store.get_entry(&k).await.unwrap(), Some(newer));
    assert!(store.delete(&k).await.unwrap());
    assert_eq!(store.get_entry(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_over_the_configured_size_is_a_miss_and_stays_on_disk() {
    let (dir, store) = temp_store(FsConfig::default());
    let big = key("big");
    // Inline content well over 64 KiB: the entry file is larger than the limit set below.
    store
        .put_entry(
            &big,
            &inline_entry(&big, &random_bytes("big entry", 200 << 10)),
        )
        .await
        .unwrap();
    let small = key("small");
    store
        .put_entry(&small, &inline_entry(&small, b"small"))
        .await
        .unwrap();
    store.flush().await.unwrap();
    drop(store);

    let root = dir.path().join("cache");
    let limited = larder_fs::FsStore::open(
        &root,
        FsConfig::default()
            .with_max_entry_bytes(64 << 10)
            .with_hot_entry_bytes(0),
    )
    .unwrap();
    assert!(limited.get_entry(&big).await.unwrap().is_none());
    assert!(limited.get_entry(&small).await.unwrap().is_some());
    assert!(
        entry_file(&root, &big).is_file(),
        "not read, but not removed either"
    );
    drop(limited);
    let unlimited = larder_fs::FsStore::open(&root, FsConfig::default()).unwrap();
    assert!(unlimited.get_entry(&big).await.unwrap().is_some());
}

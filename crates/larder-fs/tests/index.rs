//! The access index: counters, listing, and rebuilding it from the files.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use larder_core::{GetOptions, Store, StoreExt, StoreStats};
use larder_fs::{FsConfig, FsStore};

async fn listed(store: &FsStore) -> Vec<larder_core::EntryMeta> {
    let mut out = Vec::new();
    let mut s = store.list();
    while let Some(m) = s.next().await {
        out.push(m.unwrap());
    }
    out
}

/// A cache with `n` inline entries and `n / 2` blob entries; returns its stats.
async fn populate(store: &FsStore, n: usize) -> StoreStats {
    for i in 0..n {
        let k = key(&format!("inline/{i}"));
        store
            .put_entry(&k, &inline_entry(&k, format!("value {i}").as_bytes()))
            .await
            .unwrap();
        if i % 2 == 0 {
            put_blob_entry(
                store,
                &key(&format!("blob/{i}")),
                &random_bytes(&format!("b{i}"), 10_000),
            )
            .await;
        }
    }
    store.stats().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_track_hits_misses_and_usage() {
    let (_dir, store) = temp_store(FsConfig::default());
    let k = key("counted");
    let mut e = inline_entry(&k, &[7u8; 1000]);
    e.cost_ms = 250;
    store.put_entry(&k, &e).await.unwrap();
    for _ in 0..4 {
        assert!(store.get_entry(&k).await.unwrap().is_some());
    }
    let mut quiet = GetOptions::default();
    quiet.record_access = false;
    store.get_entry_opts(&k, quiet).await.unwrap();
    store.get_entry_opts(&key("absent"), quiet).await.unwrap();
    for i in 0..3 {
        assert!(
            store
                .get_entry(&key(&format!("absent/{i}")))
                .await
                .unwrap()
                .is_none()
        );
    }
    let s = store.stats().await.unwrap();
    assert_eq!((s.hits, s.misses), (4, 3));
    assert_eq!(s.bytes_saved, 4000);
    assert_eq!(s.ms_saved, 1000);
    assert_eq!(s.entries, 1);
    assert_eq!(s.bytes, 4096, "one small entry file is one block");
    let meta = listed(&store).await;
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].hits, 4);
    assert_eq!(meta[0].cost_ms, 250);
    assert_eq!(meta[0].name, k.storage_name());

    // A blob entry accounts for its blob; overwriting and deleting keep the totals exact.
    let (_, d) = put_blob_entry(&store, &key("with-blob"), &random_bytes("wb", 10_000)).await;
    let s = store.stats().await.unwrap();
    assert_eq!((s.entries, s.bytes), (2, 4096 + 4096 + 12288));
    store
        .put_entry(&k, &inline_entry(&k, b"smaller"))
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().entries, 2);
    assert!(store.delete(&key("with-blob")).await.unwrap());
    let s = store.stats().await.unwrap();
    // The blob stays until a trim collects it (it is unreferenced now).
    assert_eq!((s.entries, s.bytes), (1, 4096 + 12288));
    assert!(store.find_missing(&[d]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_through_many_entries() {
    let (_dir, store) = temp_store(FsConfig::default());
    for i in 0..2500 {
        let k = key(&format!("many/{i}"));
        store.put_entry(&k, &inline_entry(&k, b"x")).await.unwrap();
    }
    let meta = listed(&store).await;
    assert_eq!(meta.len(), 2500);
    let mut names: Vec<_> = meta.iter().map(|m| m.name.clone()).collect();
    names.dedup();
    assert_eq!(names.len(), 2500);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_index_is_rebuilt_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let before = {
        let store = FsStore::open(&root, FsConfig::default()).unwrap();
        populate(&store, 40).await
    };
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!((after.entries, after.bytes), (before.entries, before.bytes));
    assert_eq!(listed(&store).await.len(), 60);
    let k = key("inline/3");
    assert!(store.get_entry(&k).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_index_is_rebuilt_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let before = {
        let store = FsStore::open(&root, FsConfig::default()).unwrap();
        populate(&store, 20).await
    };
    let _ = std::fs::remove_file(root.join("index.sqlite-wal"));
    let _ = std::fs::remove_file(root.join("index.sqlite-shm"));
    std::fs::write(root.join("index.sqlite"), vec![0xa5u8; 64 * 1024]).unwrap();
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!((after.entries, after.bytes), (before.entries, before.bytes));
    // A corrupt entry file found by the scan is removed, not indexed.
    drop(store);
    let bad = key("inline/1");
    std::fs::write(entry_file(&root, &bad), b"garbage").unwrap();
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    assert_eq!(store.stats().await.unwrap().entries, before.entries - 1);
    assert!(!entry_file(&root, &bad).exists());
}

/// An index whose header is intact (this schema's version) is opened on first use, not by
/// `FsStore::open`: damage behind the header is still found and rebuilt from the files.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_damaged_behind_a_good_header_is_rebuilt_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let before = {
        let store = FsStore::open(&root, FsConfig::default()).unwrap();
        populate(&store, 20).await
    };
    let path = root.join("index.sqlite");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    for b in &mut bytes[100..] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(root.join("index.sqlite-wal"));
    let _ = std::fs::remove_file(root.join("index.sqlite-shm"));
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    // A hit needs no index.
    assert!(store.get_entry(&key("inline/3")).await.unwrap().is_some());
    let after = store.stats().await.unwrap();
    assert_eq!((after.entries, after.bytes), (before.entries, before.bytes));
    assert_eq!(listed(&store).await.len() as u64, before.entries);
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_index_keeps_hit_counters_and_fixes_drift() {
    let (_dir, store) = temp_store(FsConfig::default());
    let before = populate(&store, 10).await;
    store.get_entry(&key("inline/0")).await.unwrap();
    store.get_entry(&key("nothing")).await.unwrap();
    // Drift: an entry file removed behind the index's back.
    std::fs::remove_file(entry_file(store.root(), &key("inline/5"))).unwrap();
    store.rebuild_index().await.unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!(after.entries, before.entries - 1);
    assert_eq!(after.bytes, before.bytes - 4096);
    assert_eq!((after.hits, after.misses), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_events_are_flushed_in_the_background_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let config = FsConfig::default().with_flush_interval(Duration::from_millis(20));
    let store = FsStore::open(&root, config).unwrap();
    let k = key("bg");
    store.put_entry(&k, &inline_entry(&k, b"x")).await.unwrap();
    // Another handle on the same directory (another process, in effect) sees it once flushed.
    let other = FsStore::open(&root, FsConfig::default()).unwrap();
    let mut seen = 0;
    for _ in 0..100 {
        seen = listed(&other).await.len();
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 1, "the background flush did not happen");
    // Slow flushing: only the drop writes the event.
    let slow = FsStore::open(
        &root,
        FsConfig::default().with_flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let k2 = key("on-drop");
    slow.put_entry(&k2, &inline_entry(&k2, b"y")).await.unwrap();
    slow.get_entry(&k2).await.unwrap();
    drop(slow);
    let s = other.stats().await.unwrap();
    assert_eq!((s.entries, s.hits), (2, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_of_a_newer_format_are_misses_but_kept() {
    let (_dir, store) = temp_store(FsConfig::default());
    let k = key("from-the-future");
    store.put_entry(&k, &inline_entry(&k, b"x")).await.unwrap();
    let path = entry_file(store.root(), &k);
    std::fs::write(&path, b"LRDE\x09\x00whatever version 9 holds").unwrap();
    assert!(store.get_entry(&k).await.unwrap().is_none());
    assert!(path.exists(), "a newer larder's entry was removed");
    store.rebuild_index().await.unwrap();
    assert!(path.exists());
    // Plain garbage is removed.
    std::fs::write(&path, b"garbage").unwrap();
    assert!(store.get_entry(&k).await.unwrap().is_none());
    assert!(!path.exists());
}

/// A process that only read leaves its hits and misses in the access journal (`access.log`),
/// not in the database; the next process that writes the database (here: `stats`) folds them
/// in, and the listing then shows the entry's hits.
#[tokio::test(flavor = "multi_thread")]
async fn hits_of_a_reading_process_go_through_the_access_journal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (a, b) = (key("journal/a"), key("journal/b"));
    {
        let store = FsStore::open(&root, FsConfig::default().with_fsync(true)).unwrap();
        for k in [&a, &b] {
            store.put_entry(k, &inline_entry(k, b"out")).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    assert!(
        !root.join("access.log").exists(),
        "a put of a store that syncs its files goes to the database"
    );
    {
        let store = FsStore::open(&root, FsConfig::default()).unwrap();
        for _ in 0..3 {
            assert!(store.get_entry(&a).await.unwrap().is_some());
        }
        assert!(
            store
                .get_entry(&key("journal/none"))
                .await
                .unwrap()
                .is_none()
        );
        store.flush().await.unwrap();
    }
    let journal = std::fs::read_to_string(root.join("access.log")).unwrap();
    assert!(journal.contains("h "), "{journal}");
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let s = store.stats().await.unwrap();
    assert_eq!((s.hits, s.misses, s.entries), (3, 1, 2));
    assert!(
        !root.join("access.log").exists(),
        "folded into the database"
    );
    let hits: Vec<(String, u64)> = listed(&store)
        .await
        .into_iter()
        .map(|m| (m.name, m.hits))
        .collect();
    assert!(hits.contains(&(a.storage_name(), 3)), "{hits:?}");
    assert!(hits.contains(&(b.storage_name(), 0)), "{hits:?}");
}

/// A store that does not sync its files (the default) leaves the entries and blobs a
/// short-lived process wrote in the access journal too, not in the database (whose commit and
/// checkpoint would sync): the database file is untouched and no WAL is left. The next process
/// that writes the database folds them in, each insert only if its file is still the one it
/// describes.
#[tokio::test(flavor = "multi_thread")]
async fn changes_of_a_process_without_fsync_go_through_the_access_journal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    drop(FsStore::open(&root, FsConfig::default()).unwrap());
    let db = std::fs::read(root.join("index.sqlite")).unwrap();
    let (a, b, gone) = (key("journal/a"), key("journal/b"), key("journal/gone"));
    let payload = random_bytes("journal", 100_000);
    {
        let store = FsStore::open(&root, FsConfig::default()).unwrap();
        for k in [&a, &gone] {
            store.put_entry(k, &inline_entry(k, b"out")).await.unwrap();
        }
        put_blob_entry(&store, &b, &payload).await;
        assert!(store.get_entry(&a).await.unwrap().is_some());
        store.flush().await.unwrap();
    }
    assert_eq!(
        std::fs::read(root.join("index.sqlite")).unwrap(),
        db,
        "the database was written"
    );
    assert!(!root.join("index.sqlite-wal").exists());
    assert!(!root.join("access.log").exists());
    // (a larder that knows only access records leaves this file alone)
    let journal = std::fs::read_to_string(root.join("changes.log")).unwrap();
    assert_eq!(
        journal.matches("\ni ").count() + journal.starts_with("i ") as usize,
        3,
        "{journal}"
    );
    assert!(journal.contains("\nb "), "{journal}");
    // An entry removed behind the journal's back is not indexed.
    std::fs::remove_file(entry_file(&root, &gone)).unwrap();

    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let s = store.stats().await.unwrap();
    assert!(
        !root.join("changes.log").exists(),
        "folded into the database"
    );
    assert_eq!((s.entries, s.hits), (2, 1));
    // The same figures as a rebuild from the files finds.
    store.rebuild_index().await.unwrap();
    let rebuilt = store.stats().await.unwrap();
    assert_eq!((rebuilt.entries, rebuilt.bytes), (s.entries, s.bytes));
    let names: Vec<String> = listed(&store).await.into_iter().map(|m| m.name).collect();
    assert!(names.contains(&a.storage_name()) && names.contains(&b.storage_name()));
    assert!(!names.contains(&gone.storage_name()), "{names:?}");
}

/// A flush of many new entries (a long-lived process's last one, a bulk import) writes them to the
/// database in one transaction: journaling them would only move their cost, doubled, to
/// whichever process folds the journal next (a trim, `stats`).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_batch_of_changes_goes_to_the_database_not_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    {
        // No background flush in between (600 events stay under its count threshold): the
        // explicit flush below meets all of them, however slow the machine.
        let config = FsConfig::default().with_flush_interval(std::time::Duration::from_secs(3600));
        let store = FsStore::open(&root, config).unwrap();
        for i in 0..600 {
            let k = key(&format!("bulk/{i}"));
            store
                .put_entry(&k, &inline_entry(&k, b"out"))
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
        assert!(
            !root.join("changes.log").exists(),
            "the batch was journaled"
        );
        let s = store.stats().await.unwrap();
        assert_eq!(s.entries, 600);
    }
    assert!(!root.join("changes.log").exists());
}

//! Verified once, then trusted: reads of a blob whose file is unchanged since it was verified
//! skip the hash; a file changed through the file system is verified again (and removed when
//! wrong); the scrub re-verifies everything and removes what fails.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use larder_core::{Digest, ErrorKind, Store, StoreExt};
use larder_fs::{Compression, FsConfig, FsStore, ScrubProgress};

/// Longer than the coarse clock tick a just-written file's identity must age by before it is
/// trusted on kernels without fine-grained change times (see larder-fs's `verified` module).
const SETTLE: Duration = Duration::from_millis(60);

/// Read blob `d` to its end: its bytes, or the error its stream ended with.
async fn read_all(store: &FsStore, d: &Digest) -> larder_core::Result<Vec<u8>> {
    let read = store.get_blob(d).await?.expect("the blob is there");
    let mut out = Vec::new();
    let mut stream = read.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_blob_is_read_again_without_hashing() {
    let (_dir, store) = temp_store(FsConfig::default().with_compression(Compression::Off));
    for (name, len) in [("big", 5 << 20), ("small", 20_000)] {
        let bytes = random_bytes(name, len);
        let d = store
            .put_blob_bytes(Bytes::from(bytes.clone()))
            .await
            .expect("put");
        tokio::time::sleep(SETTLE).await;
        // Written here (hashed on the way in), or at worst verified by this first read.
        assert!(read_all(&store, &d).await.expect("read") == bytes);
        let before = store.blob_reads();
        for _ in 0..3 {
            assert!(read_all(&store, &d).await.expect("read") == bytes, "{name}");
        }
        let after = store.blob_reads();
        assert_eq!(after.trusted - before.trusted, 3, "{name}: {after:?}");
        assert_eq!(after.trusted_bytes - before.trusted_bytes, 3 * len as u64);
        assert_eq!(after.verified, before.verified, "{name}: {after:?}");
        assert_eq!(
            after.hashed_bytes, before.hashed_bytes,
            "{name}: nothing hashed"
        );
    }
    assert_eq!(store.blob_reads().recorded, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_changed_through_the_file_system_is_verified_and_removed() {
    let (_dir, store) = temp_store(FsConfig::default().with_compression(Compression::Off));
    for (name, len) in [("big", 3 << 20), ("small", 20_000)] {
        let bytes = random_bytes(name, len);
        let d = store
            .put_blob_bytes(Bytes::from(bytes.clone()))
            .await
            .expect("put");
        tokio::time::sleep(SETTLE).await;
        read_all(&store, &d).await.expect("read");
        read_all(&store, &d).await.expect("read");
        let trusted = store.blob_reads();
        assert!(trusted.trusted >= 1, "{name}: {trusted:?}");
        // A write through the file system (same inode, same length): its change time moves.
        assert!(larder_fs::testkit::corrupt_blob(store.root(), &d));
        let err = read_all(&store, &d).await.expect_err("the damage is found");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        let after = store.blob_reads();
        assert_eq!(
            after.trusted, trusted.trusted,
            "{name}: not trusted once changed"
        );
        assert_eq!(after.verified, trusted.verified + 1);
        assert_eq!(after.corrupt, trusted.corrupt + 1);
        assert!(blob_file(store.root(), &d).is_none(), "{name}: removed");
        assert!(store.get_blob(&d).await.expect("a miss").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_file_replaced_under_its_name_is_verified_and_removed() {
    // A blob replaced by another file under its name (a new inode, as a restore from backup
    // or a hand copy would do) is not the file that was verified.
    let (_dir, store) = temp_store(FsConfig::default().with_compression(Compression::Off));
    let bytes = random_bytes("replaced", 2 << 20);
    let d = store
        .put_blob_bytes(Bytes::from(bytes.clone()))
        .await
        .expect("put");
    tokio::time::sleep(SETTLE).await;
    read_all(&store, &d).await.expect("read");
    let file = blob_file(store.root(), &d).expect("stored");
    let mut other = bytes.clone();
    other[12345] ^= 0x40;
    let tmp = store.root().join("replacement");
    std::fs::write(&tmp, &other).expect("write");
    std::fs::rename(&tmp, &file).expect("replace");
    let err = read_all(&store, &d).await.expect_err("damage found");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(blob_file(store.root(), &d).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scrub_removes_damaged_blobs_and_keeps_good_ones() {
    let (_dir, store) = temp_store(FsConfig::default());
    let raw = random_bytes("scrub-raw", 3 << 20);
    let small = random_bytes("scrub-small", 1000);
    let text = b"compressible text, over and over\n".repeat(100_000);
    let good = random_bytes("scrub-good", 2 << 20);
    let mut digests = Vec::new();
    for bytes in [&raw, &small, &text, &good] {
        digests.push(
            store
                .put_blob_bytes(Bytes::from(bytes.clone()))
                .await
                .expect("put"),
        );
    }
    let [d_raw, d_small, d_text, d_good] = digests[..] else {
        unreachable!()
    };
    assert!(
        blob_file(store.root(), &d_text)
            .expect("stored")
            .to_string_lossy()
            .ends_with(".zst")
    );
    for d in [&d_raw, &d_small, &d_text] {
        assert!(larder_fs::testkit::corrupt_blob(store.root(), d));
    }
    let progress = ScrubProgress::new();
    let report = store
        .scrub(None, progress.clone())
        .await
        .expect("a scrub pass");
    let mut found = report.corrupt.clone();
    found.sort();
    let mut expected = vec![d_raw, d_small, d_text];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(report.good, 1);
    assert!(!report.stopped);
    for d in &expected {
        assert!(blob_file(store.root(), d).is_none(), "{d} removed");
    }
    assert!(read_all(&store, &d_good).await.expect("kept") == good);
    let status = progress.status();
    assert_eq!(status.passes, 1);
    assert_eq!(status.pass_blobs_total, 4);
    assert_eq!(status.pass_blobs_done, 4);
    assert_eq!(status.pass_corrupt, 3);
    assert_eq!(status.corrupt_removed, 3);
    assert!(!status.running);
    assert!(status.last_pass_end_ms.is_some());
    assert!((status.fraction() - 1.0).abs() < 1e-9);
    // The removed blobs are gone from the accounting too.
    store.flush().await.expect("flush");
    let second = store.scrub(None, progress.clone()).await.expect("again");
    assert!(second.corrupt.is_empty());
    assert_eq!(second.good, 1);
    assert_eq!(progress.status().passes, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_scrub_returns_at_once_and_counts_no_pass() {
    let (_dir, store) = temp_store(FsConfig::default());
    for i in 0..4 {
        store
            .put_blob_bytes(Bytes::from(random_bytes(&format!("slow-{i}"), 1 << 20)))
            .await
            .expect("put");
    }
    let progress = ScrubProgress::new();
    // 1 KiB/s would take over an hour for 4 MiB: only the stop ends it.
    let running = {
        let progress = progress.clone();
        let store = std::sync::Arc::new(store);
        tokio::spawn(async move { store.scrub(Some(1024), progress).await })
    };
    while progress.status().pass_bytes_done == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(progress.status().running);
    progress.stop();
    let report = running.await.expect("task").expect("scrub");
    assert!(report.stopped);
    assert!(report.corrupt.is_empty());
    assert_eq!(progress.status().passes, 0);
    assert!(!progress.status().running);
}

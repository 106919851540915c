//! Remote trimming against a real SeaweedFS: budgets hold, recently used entries stay (learned
//! from access records), live blobs are never deleted, blobs a concurrent put relies on survive,
//! one trim at a time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use larder_core::{Content, Entry, Output, OutputKind, Store, StoreExt, TrimOptions};
use larder_s3::S3Store;
use larder_testservers::SeaweedFs;

fn store(s3: &SeaweedFs, prefix: &str, grace: Duration) -> S3Store {
    common::builder(s3)
        .with_prefix(prefix)
        .expect("prefix")
        .with_trim_grace(grace)
        .build()
        .expect("store")
}

fn budget(max_bytes: Option<u64>, max_entries: Option<u64>) -> TrimOptions {
    let mut o = TrimOptions::default();
    o.max_bytes = max_bytes;
    o.max_entries = max_entries;
    o
}

/// Entry `k{i}` with its own 50 kB blob and a blob shared by all.
async fn put_entry(
    s: &S3Store,
    i: usize,
    shared: larder_core::Digest,
) -> (larder_core::Key, larder_core::Digest) {
    let own = Bytes::from(vec![i as u8; 50_000]);
    let d = s.put_blob_bytes(own).await.expect("blob");
    let key = larder_core::Key::new(format!("k{i}")).expect("key");
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

#[tokio::test(flavor = "multi_thread")]
async fn trim_keeps_budgets_and_recently_used_entries_and_live_blobs() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let s = store(&s3, "trim/budget", Duration::ZERO);
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

    // A dry run reports and changes nothing.
    let mut dry = budget(None, Some(5));
    dry.dry_run = true;
    let r = s.trim(&dry, None).await.expect("dry run");
    assert_eq!(r.evicted_entries, 5);
    assert_eq!(s.stats().await.expect("stats").entries, 10);

    let r = s.trim(&budget(None, Some(5)), None).await.expect("trim");
    assert_eq!((r.evicted_entries, r.remaining_entries), (5, 5), "{r:?}");
    for (i, (k, own)) in keys.iter().enumerate() {
        let kept = s.get_entry(k).await.expect("get").is_some();
        assert_eq!(kept, i < 5, "entry {i}: recently used ones stay");
        let missing = s.find_missing(&[*own]).await.expect("find");
        assert_eq!(missing.is_empty(), i < 5, "blob of entry {i}");
    }
    assert!(
        s.find_missing(&[shared]).await.expect("find").is_empty(),
        "a blob still named by a live entry is kept"
    );

    // A byte budget: each entry accounts for its document plus 70 kB of blobs.
    let r = s
        .trim(&budget(Some(3 * 75_000), None), None)
        .await
        .expect("trim");
    assert!(r.remaining_bytes <= 3 * 75_000, "{r:?}");
    assert_eq!(s.stats().await.expect("stats").entries, r.remaining_entries);
    assert!(s.stats().await.expect("stats").bytes <= 3 * 75_000 + 20_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_of_a_put_in_flight_survive_a_trim() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let s = store(&s3, "trim/race", Duration::from_secs(3600));
    let shared = s
        .put_blob_bytes(Bytes::from(vec![1; 20_000]))
        .await
        .expect("shared");
    put_entry(&s, 0, shared).await;
    // A writer has stored its blob but not yet its entry.
    let pending = s
        .put_blob_bytes(Bytes::from_static(b"the entry naming me is on its way"))
        .await
        .expect("blob");
    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert_eq!(r.evicted_entries, 1);
    assert!(
        s.find_missing(&[pending, shared])
            .await
            .expect("find")
            .is_empty(),
        "blobs younger than the grace period are kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_blob_a_writer_finds_present_outlives_the_next_trim() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    // Grace 4 s; timestamps may be whole seconds, hence the margins below.
    let s = store(&s3, "trim/reuse", Duration::from_secs(4));
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
    // A writer finds the blob present (older than half the grace period), so it skips
    // uploading it; its entry is still to come.
    assert!(s.find_missing(&[reused]).await.expect("find").is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Unrefreshed, the blob would now be past the grace period, unreferenced, and collected.
    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert_eq!(r.evicted_entries, 1);
    assert!(
        s.find_missing(&[reused]).await.expect("find").is_empty(),
        "the blob the writer relies on was collected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trim_at_a_time() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let s = store(&s3, "trim/lock", Duration::ZERO);
    // Another trimmer holds a fresh lease (`PREFIX/trim/lock`).
    let far = larder_core::entry::now_ms() + 600_000;
    put_raw(&s3, "trim/lock/trim/lock", format!("1 {far}\n")).await;
    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert!(r.skipped_locked, "{r:?}");
    // An expired lease is taken over.
    put_raw(&s3, "trim/lock/trim/lock", "1 1000\n".to_owned()).await;
    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert!(!r.skipped_locked, "{r:?}");
}

async fn put_raw(s3: &SeaweedFs, key: &str, body: String) {
    common::raw_client(s3)
        .put_object()
        .bucket(s3.bucket())
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(Bytes::from(body)))
        .send()
        .await
        .expect("raw put");
}

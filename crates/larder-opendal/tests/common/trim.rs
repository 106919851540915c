//! Remote trimming checks (larder-bucket's trim over the OpenDAL store), run against each
//! service that lists ([`shared`]): larder-bucket's checks where they hold, and OpenDAL's own
//! where it differs: no refresh in place (an old blob is uploaded again), versions from ETags or
//! modification times, blobs in parts counted and collected as a whole, what a trim leaves.
//! Each check takes a fresh store (its own root) with the grace period it needs.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use larder_bucket::testkit::{budget, put_entry};
use larder_bucket::{Bucket, Listed};
use larder_core::{Content, Digest, Entry, Key, Output, OutputKind, Store, StoreExt};
use larder_opendal::OpendalStore;

/// Files (not directories) under `dir`.
async fn files(s: &OpendalStore, dir: &str) -> usize {
    match s
        .backend()
        .inner()
        .operator()
        .list_with(dir)
        .recursive(true)
        .await
    {
        Ok(items) => items.iter().filter(|e| !e.metadata().is_dir()).count(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => 0,
        Err(e) => panic!("listing {dir}: {e}"),
    }
}

/// larder-bucket's trim checks that hold for a store without refresh in place, and OpenDAL's
/// own: `make(root, grace)` is a store rooted at `root`.
pub async fn shared(make: impl Fn(&str, Duration) -> OpendalStore) {
    budgets_hold_and_recently_used_entries_and_live_blobs_stay(&make("budget", Duration::ZERO))
        .await;
    larder_bucket::testkit::blobs_of_a_put_in_flight_survive(&make).await;
    larder_bucket::testkit::one_trim_at_a_time(&make).await;
    larder_bucket::testkit::a_blob_is_deleted_as_stale_only_if_it_still_is(&make).await;
    let grace = Duration::from_secs(4);
    a_reused_old_blob_is_uploaded_again(&make("refresh", grace), grace).await;
    an_entry_rewritten_since_listing_is_not_evicted(&make("version", Duration::ZERO)).await;
}

/// As larder-bucket's check of the same name, but a blob is looked for with a read (with a
/// grace of zero, a store that cannot refresh in place reports every blob missing, to be
/// uploaded again); and what a trim leaves: the index, no lease, no folded access record, and
/// with no entry left, no blob (whole or in parts).
async fn budgets_hold_and_recently_used_entries_and_live_blobs_stay(s: &OpendalStore) {
    assert!(s.capability().trim);
    let shared = s
        .put_blob_bytes(Bytes::from(vec![0xaa; 20_000]))
        .await
        .expect("shared");
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(put_entry(s, i, shared).await);
    }
    // Entries 0..5 were written first, but are the ones being used.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (k, _) in &keys[..5] {
        assert!(s.get_entry(k).await.expect("get").is_some());
    }
    s.flush().await.expect("flush writes the access record");
    assert_eq!(files(s, "access/").await, 1, "one record for the five hits");
    let mut dry = budget(None, Some(5));
    dry.dry_run = true;
    assert_eq!(
        s.trim(&dry, None).await.expect("dry run").evicted_entries,
        5
    );
    assert_eq!(s.stats().await.expect("stats").entries, 10);

    let r = s.trim(&budget(None, Some(5)), None).await.expect("trim");
    assert_eq!((r.evicted_entries, r.remaining_entries), (5, 5), "{r:?}");
    for (i, (k, own)) in keys.iter().enumerate() {
        let kept = s.get_entry(k).await.expect("get").is_some();
        assert_eq!(kept, i < 5, "entry {i}: recently used ones stay");
        let blob = s.get_blob(own).await.expect("get blob").is_some();
        assert_eq!(blob, i < 5, "blob of entry {i}");
    }
    let kept = s.get_blob(&shared).await.expect("get").is_some();
    assert!(kept, "a blob still named by a live entry is kept");
    let op = s.backend().inner().operator();
    assert!(op.exists("trim/index").await.expect("stat index"));
    assert!(!op.exists("trim/lock").await.expect("stat lock"));
    assert_eq!(files(s, "access/").await, 0, "folded records are removed");

    // A byte budget: each entry accounts for its document plus 70 kB of blobs.
    let r = s.trim(&budget(Some(3 * 75_000), None), None).await;
    let r = r.expect("trim");
    assert!(r.remaining_bytes <= 3 * 75_000, "{r:?}");
    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.entries, r.remaining_entries);
    assert!(stats.bytes <= 3 * 75_000 + 20_000, "{stats:?}");

    // Everything goes, blobs included.
    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert_eq!(r.remaining_entries, 0, "{r:?}");
    let stats = s.stats().await.expect("stats");
    assert_eq!((stats.entries, stats.bytes), (0, 0), "{stats:?}");
}

/// A blob reused after half the grace period reads as missing (OpenDAL has no refresh in place
/// every service honours), and a put stores it again, so a trim that follows keeps it.
async fn a_reused_old_blob_is_uploaded_again(s: &OpendalStore, grace: Duration) {
    let bytes = Bytes::from(vec![7; 30_000]);
    let d = s.put_blob_bytes(bytes.clone()).await.expect("blob");
    assert!(s.find_missing(&[d]).await.expect("find").is_empty());
    tokio::time::sleep(grace / 2 + Duration::from_millis(200)).await;
    assert_eq!(
        s.find_missing(&[d]).await.expect("find"),
        vec![d],
        "an old blob is uploaded again rather than reused"
    );
    s.put_blob_bytes(bytes).await.expect("refresh");
    assert!(s.find_missing(&[d]).await.expect("find").is_empty());
    tokio::time::sleep(grace / 2).await;
    // Unreferenced, but refreshed less than a grace period ago.
    s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert!(s.get_blob(&d).await.expect("get").is_some());
}

async fn list(s: &OpendalStore, prefix: &str) -> Vec<Listed> {
    s.backend().list(prefix).try_collect().await.expect("list")
}

/// An entry re-put (another version) between the listing and the delete stays: checked
/// directly on the version the store hands larder-bucket.
async fn an_entry_rewritten_since_listing_is_not_evicted(s: &OpendalStore) {
    let shared = s
        .put_blob_bytes(Bytes::from(vec![3; 20_000]))
        .await
        .expect("shared");
    let (key, _) = put_entry(s, 1, shared).await;
    let listed = list(s, "entries/").await;
    assert_eq!(listed.len(), 1);
    // Rewritten with another document (a later creation time changes its bytes).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut e = Entry::new(key.as_str(), "test, again");
    e.cost_ms = 12345;
    s.put_entry(&key, &e).await.expect("re-put");
    let delete_listed = |l: Listed| async move {
        let deleted = s.backend().delete_if_version(&l.key, &l.version).await;
        deleted.expect("delete if version")
    };
    assert!(
        !delete_listed(listed[0].clone()).await,
        "a rewritten entry is not someone's stale copy"
    );
    assert!(s.get_entry(&key).await.expect("get").is_some());
    let listed = list(s, "entries/").await;
    assert!(
        delete_listed(listed[0].clone()).await,
        "the listed version is deleted"
    );
    assert!(s.get_entry(&key).await.expect("get").is_none());
}

/// `s` stores large blobs in parts (a service that takes an object only in one write) with a
/// part size of 1 MiB, and has a trim grace of zero: a blob in parts is listed, counted and
/// collected as a whole, and parts no manifest names (a failed upload) are collected too.
pub async fn blobs_in_parts_are_counted_and_collected_whole(s: &OpendalStore) {
    assert!(
        !s.backend().inner().streams_blobs(),
        "this check needs a store that writes parts"
    );
    let big: Bytes = (0..(3u32 << 20) + 17).map(|i| (i % 251) as u8).collect();
    let d = s.put_blob_bytes(big.clone()).await.expect("big blob");
    let key = Key::new("big").expect("key");
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs.push(Output {
        path: "big.bin".into(),
        kind: OutputKind::File {
            content: Content::blob(d, big.len() as u64),
            executable: false,
        },
    });
    s.put_entry(&key, &e).await.expect("entry");
    assert_eq!(files(s, &format!("parts/{}/", d.to_hex())).await, 4);
    // Leftover parts of an upload that failed and could not clean up.
    let orphan = Digest::of(b"never finished");
    let part = s.backend().part_key(orphan.to_hex(), 0);
    s.backend()
        .inner()
        .operator()
        .write(&part, vec![9u8; 1000])
        .await
        .expect("orphan part");

    let blobs = list(s, "blobs/").await;
    let names: Vec<&str> = blobs.iter().map(|b| b.name()).collect();
    assert_eq!(blobs.len(), 2, "one listing per digest: {names:?}");
    let listed = blobs
        .iter()
        .find(|b| b.name() == d.to_hex())
        .expect("the big blob is listed under its digest");
    assert!(
        listed.size > big.len() as u64,
        "parts and manifest: {listed:?}"
    );

    // While its entry lives, the blob stays whole.
    let r = s.trim(&budget(None, Some(1)), None).await.expect("trim");
    assert_eq!(r.evicted_entries, 0);
    assert_eq!(
        s.get_blob_bytes(&d, 1 << 30).await.expect("get").as_ref(),
        Some(&big.to_vec())
    );
    assert_eq!(files(s, &format!("parts/{}/", orphan.to_hex())).await, 0);

    let r = s.trim(&budget(None, Some(0)), None).await.expect("trim");
    assert_eq!(r.evicted_entries, 1, "{r:?}");
    assert!(s.get_blob(&d).await.expect("get").is_none());
    assert_eq!(files(s, "parts/").await, 0, "every part is gone");
    assert_eq!(files(s, "blobs/").await, 0, "the manifest is gone");
}

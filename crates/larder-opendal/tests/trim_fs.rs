//! Remote trimming (larder-bucket's trim) on OpenDAL's `fs` service in a temporary directory:
//! the shared trim checks, plus what only a local directory shows (no file left behind, a
//! store that does not list says why it cannot trim).

mod common;

use std::time::Duration;

use common::trim;
use larder_core::{ErrorKind, Store, StoreExt};
use larder_opendal::{OpendalStore, OpendalStoreBuilder};

fn store(dir: &std::path::Path, grace: Duration) -> OpendalStore {
    OpendalStoreBuilder::from_url(&format!("opendal+fs://{}", dir.display()))
        .expect("url")
        .with_trim_grace(grace)
        .build()
        .expect("store")
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_hold_and_recently_used_entries_and_live_blobs_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = store(&dir.path().join("store"), Duration::ZERO);
    trim::budgets_hold_and_recently_used_entries_and_live_blobs_stay(&s).await;
    let blobs = std::fs::read_dir(dir.path().join("store/blobs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "every blob file is gone once no entry names it");
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_of_a_put_in_flight_survive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = store(dir.path(), Duration::from_secs(3600));
    trim::blobs_of_a_put_in_flight_survive(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_old_blob_is_refreshed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let grace = Duration::from_secs(2);
    trim::a_reused_old_blob_is_refreshed(&store(dir.path(), grace), grace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trim_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    trim::one_trim_at_a_time(&store(dir.path(), Duration::ZERO)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_rewritten_since_listing_is_not_evicted() {
    let dir = tempfile::tempdir().expect("temp dir");
    trim::an_entry_rewritten_since_listing_is_not_evicted(&store(dir.path(), Duration::ZERO)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_does_not_list_cannot_trim_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = OpendalStore::from_url(&format!("opendal+fs://{}?list=false", dir.path().display()))
        .expect("store");
    assert!(!s.capability().trim);
    let err = s
        .trim(&trim::budget(Some(1), None), None)
        .await
        .expect_err("no trim");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("cannot list"), "{err}");
    // Hits are not recorded where no trim would ever fold them.
    let key = larder_core::Key::new("k").expect("key");
    s.put_entry(&key, &larder_core::Entry::new("k", "test"))
        .await
        .expect("put");
    assert!(s.get_entry(&key).await.expect("get").is_some());
    s.flush().await.expect("flush");
    assert!(!dir.path().join("access").exists());
}

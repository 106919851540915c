//! Remote trimming (larder-bucket's trim) on OpenDAL's `fs` service in a temporary directory:
//! the shared trim checks, plus what only a local directory shows (no file left behind, a
//! store that does not list says why it cannot trim).

mod common;

use std::time::Duration;

use common::trim;
use larder_core::{ErrorKind, Store, StoreExt};
use larder_opendal::{BucketBuilder, OpendalStore, OpendalStoreBuilder};

fn store(dir: &std::path::Path, grace: Duration) -> OpendalStore {
    OpendalStoreBuilder::from_url(&format!("opendal+fs://{}", dir.display()))
        .expect("url")
        .with_trim_grace(grace)
        .build()
        .expect("store")
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_trim_checks() {
    let dir = tempfile::tempdir().expect("temp dir");
    trim::shared(|root, grace| store(&dir.path().join(root), grace)).await;
    let blobs = std::fs::read_dir(dir.path().join("budget/blobs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "every blob file is gone once no entry names it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_does_not_list_cannot_trim_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = OpendalStore::from_url(&format!("opendal+fs://{}?list=false", dir.path().display()))
        .expect("store");
    assert!(!s.capability().trim);
    let err = s
        .trim(&larder_bucket::testkit::budget(Some(1), None), None)
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

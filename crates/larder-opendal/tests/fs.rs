//! The shared conformance suite against OpenDAL's `fs` service on a temporary directory, and
//! what does not need a server: a service not compiled in (trimming: `trim_fs.rs`).

use larder_bucket::testkit::conformance;
use larder_core::{ErrorKind, Store};
use larder_opendal::OpendalStore;

#[tokio::test(flavor = "multi_thread")]
async fn conformance_fs_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("opendal+fs://{}", dir.path().join("store").display());
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        store.backend().streams_blobs(),
        "fs takes a blob in several writes"
    );
    let cap = store.capability();
    assert!(cap.list && cap.delete && cap.trim, "{cap:?}");
    conformance(store).await;
    // Entries and blobs are where the docs say, and no temporary file is left behind.
    let root = dir.path().join("store");
    assert!(
        std::fs::read_dir(root.join("entries"))
            .expect("entries")
            .count()
            > 0
    );
    assert!(
        std::fs::read_dir(root.join("blobs"))
            .expect("blobs")
            .count()
            > 0
    );
    assert_eq!(
        std::fs::read_dir(root.join(".tmp"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "temporary files left in .tmp"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn services_not_compiled_in_name_their_feature() {
    let err = OpendalStore::from_url("opendal+sftp://host/dir").expect_err("not built in");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("services-sftp"), "{err}");
}

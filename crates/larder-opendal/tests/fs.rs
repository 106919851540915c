//! The shared conformance suite against OpenDAL's `fs` service on a temporary directory, one
//! trial per check (`opendal_fs::…`), and what does not need a server: the layout on disk, a
//! service not compiled in (trimming: `trim_fs.rs`).

use bytes::Bytes;
use larder_bucket::testkit::BucketHarness;
use larder_core::testkit::Suites;
use larder_core::{Entry, ErrorKind, Key, Store, StoreExt};
use larder_opendal::OpendalStore;

/// The fs service's store in `dir`, with the capabilities the docs promise.
fn fs_store(dir: &std::path::Path) -> OpendalStore {
    let url = format!("opendal+fs://{}", dir.join("store").display());
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        store.backend().inner().streams_blobs(),
        "fs takes a blob in several writes"
    );
    let cap = store.capability();
    assert!(cap.list && cap.delete && cap.trim, "{cap:?}");
    store
}

/// Entries and blobs are where the docs say, and no temporary file is left behind.
async fn layout_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fs_store(dir.path());
    store
        .put_blob_bytes(Bytes::from(vec![7u8; 100_000]))
        .await
        .expect("blob");
    let key = Key::new("layout").expect("key");
    store
        .put_entry(&key, &Entry::new(key.as_str(), "test"))
        .await
        .expect("entry");
    let root = dir.path().join("store");
    for sub in ["entries", "blobs"] {
        let n = std::fs::read_dir(root.join(sub)).expect(sub).count();
        assert!(n > 0, "nothing under {sub}/");
    }
    assert_eq!(
        std::fs::read_dir(root.join(".tmp"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "temporary files left in .tmp"
    );
}

async fn services_not_compiled_in_name_their_feature() {
    let err = OpendalStore::from_url("opendal+sftp://host/dir").expect_err("not built in");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("services-sftp"), "{err}");
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("opendal_fs", || async {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = fs_store(dir.path());
            Ok(BucketHarness::new(store).keep(dir))
        })
        .test("layout_on_disk", layout_on_disk)
        .test(
            "services_not_compiled_in_name_their_feature",
            services_not_compiled_in_name_their_feature,
        )
        .run()
}

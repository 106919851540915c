//! The shared conformance suite, run against a filesystem store in a temporary directory, one
//! trial per check (`cargo test -p larder-fs --test conformance -- fs::large`).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use larder_core::testkit::{Harness, Suites};
use larder_core::{Digest, Key, Store};
use larder_fs::{FsConfig, FsStore};

struct FsHarness {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<FsStore>,
}

impl FsHarness {
    fn start() -> FsHarness {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("cache");
        let store = Arc::new(FsStore::open(&root, FsConfig::default()).expect("open store"));
        FsHarness {
            _dir: dir,
            root,
            store,
        }
    }
}

#[async_trait]
impl Harness for FsHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        larder_fs::testkit::corrupt_blob(&self.root, digest)
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        larder_fs::testkit::corrupt_entry(&self.root, key)
    }
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("fs", || async { Ok(FsHarness::start()) })
        .run()
}

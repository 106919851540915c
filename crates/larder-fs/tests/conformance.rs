//! The shared conformance suite, run against a filesystem store in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use larder_core::testkit::{Harness, run_all};
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

    fn blob_file(&self, d: &Digest) -> Option<PathBuf> {
        let hex = d.to_hex();
        let dir = self.root.join("blobs").join(&hex[..2]);
        [dir.join(&hex), dir.join(format!("{hex}.zst"))]
            .into_iter()
            .find(|p| p.exists())
    }
}

#[async_trait]
impl Harness for FsHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        let Some(path) = self.blob_file(digest) else {
            return false;
        };
        // Blobs are stored read-only.
        if std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).is_err() {
            return false;
        }
        let Ok(mut bytes) = std::fs::read(&path) else {
            return false;
        };
        if bytes.is_empty() {
            return false;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&path, bytes).is_ok()
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        let name = key.storage_name();
        let path = self.root.join("entries").join(&name[..2]).join(&name);
        path.exists() && std::fs::write(&path, b"LRDE\x01\x00 not an entry").is_ok()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance() {
    let h = FsHarness::start();
    run_all(&h).await;
}

//! The shared conformance suite over a command store whose "remote" is a local directory
//! reached with `cp` (uploads copy then rename, so they publish atomically), `test -e`
//! (exists) and `rm -f` (delete).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use larder_cmd::CmdStore;
use larder_core::testkit::{Harness, Suites};
use larder_core::{Digest, Key, Store};

struct CpHarness {
    _dir: tempfile::TempDir,
    remote: PathBuf,
    store: Arc<CmdStore>,
}

impl CpHarness {
    fn new(with_exists: bool) -> CpHarness {
        let dir = tempfile::tempdir().expect("temp dir");
        let remote = dir.path().join("remote dir");
        for sub in ["entries", "blobs"] {
            std::fs::create_dir_all(remote.join(sub)).expect("mkdir");
        }
        // Uploads publish atomically (copy, then rename), as a real remote's upload does: plain
        // `cp` racing another `cp` onto the same name can fail with EEXIST, and a reader racing
        // it can see half a file. Downloads are plain `cp`.
        let mut b = CmdStore::builder(remote.to_string_lossy())
            .with_put(r#"sh -c 'cp "$0" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"' %{SRC} %{TGT}"#)
            .expect("put")
            .with_get("cp %{SRC} %{TGT}")
            .expect("get")
            .with_delete("rm -f %{TGT}")
            .expect("delete")
            .with_miss_status(vec![1]);
        if with_exists {
            b = b.with_exists("test -e %{TGT}").expect("exists");
        }
        let store = Arc::new(b.build().expect("store"));
        CpHarness {
            _dir: dir,
            remote,
            store,
        }
    }

    fn damage(&self, rel: String) -> bool {
        let p = self.remote.join(rel);
        let Ok(mut bytes) = std::fs::read(&p) else {
            return false;
        };
        if bytes.is_empty() {
            return false;
        }
        bytes[0] ^= 0xff;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(&p, bytes).is_ok()
    }
}

#[async_trait]
impl Harness for CpHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.damage(format!("blobs/{}", digest.to_hex()))
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.damage(format!("entries/{}", key.storage_name()))
    }

    fn large_blob_bytes(&self) -> u64 {
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }
}

/// Both configurations, as trials `exists::…` and `no_exists::…` (without an exists command,
/// find-missing trusts what this process has seen).
fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("exists", || async { Ok(CpHarness::new(true)) })
        .store("no_exists", || async { Ok(CpHarness::new(false)) })
        .run()
}

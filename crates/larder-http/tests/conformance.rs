//! The shared conformance suite, run against a real larder-server on a free loopback port,
//! over a temporary directory the test owns (so it can damage stored files directly).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use larder_core::testkit::{Harness, run_all};
use larder_core::{Digest, Key, Store};
use larder_http::HttpStore;
use larder_server::{Server, ServerConfig};

struct HttpHarness {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<HttpStore>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpHarness {
    async fn start() -> HttpHarness {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("cache");
        let config = ServerConfig::new(&root, "127.0.0.1:0".parse().expect("addr"));
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let store = Arc::new(HttpStore::new(format!("http://{addr}/v1")).expect("client"));
        HttpHarness {
            _dir: dir,
            root,
            store,
            _stop: stop,
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
impl Harness for HttpHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        let Some(path) = self.blob_file(digest) else {
            return false;
        };
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

    fn large_blob_bytes(&self) -> u64 {
        // Up, down and placed over loopback HTTP: 256 MiB keeps CI quick and still catches
        // any buffering of a whole blob.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance() {
    let h = HttpHarness::start().await;
    run_all(&h).await;
}

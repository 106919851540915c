//! The shared conformance suite, run against a real larder-server on a free loopback port,
//! over a temporary directory the test owns (so it can damage stored files directly), one trial
//! per check: the http store alone (`http::…`, including a dead and a hanging endpoint), and a
//! local fs tier in front of it as the CLI stacks them (`fs_http::…`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use larder_core::testkit::{Harness, Suites};
use larder_core::{Digest, Key, Store};
use larder_fs::testkit::FsInFront;
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
}

#[async_trait]
impl Harness for HttpHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        larder_fs::testkit::corrupt_blob(&self.root, digest)
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        larder_fs::testkit::corrupt_entry(&self.root, key)
    }

    fn large_blob_bytes(&self) -> u64 {
        // Up, down and placed over loopback HTTP: 256 MiB keeps CI quick and still catches
        // any buffering of a whole blob.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }

    fn at_endpoint(&self, addr: std::net::SocketAddr) -> Option<Arc<dyn Store>> {
        let store = HttpStore::builder(format!("http://{addr}/v1"))
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(3))
            .retries(0, Duration::ZERO)
            .build()
            .expect("client");
        Some(Arc::new(store))
    }
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("http", || async { Ok(HttpHarness::start().await) })
        .store("fs_http", || async {
            Ok(FsInFront::new(HttpHarness::start().await))
        })
        .run()
}

//! The shared conformance suite against real OpenDAL services: `fs` on a temporary directory,
//! and `webdav` against `larder serve`'s WebDAV tree (`/dav`), started in this process on a
//! free loopback port. Plus the store's own checks: errors of a dead or hanging server, a
//! service that is not compiled in, trimming declared unsupported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use larder_core::testkit::{Harness, run_all};
use larder_core::{Digest, ErrorKind, Key, Store, StoreExt, TrimOptions};
use larder_opendal::{OpendalStore, OpendalStoreBuilder};

struct OpendalHarness {
    store: Arc<OpendalStore>,
}

impl OpendalHarness {
    /// Flip bytes of `path` behind the store's back (through its own operator, which reaches
    /// the same objects): `false` when there is no such object.
    async fn damage(&self, path: &str) -> bool {
        let op = self.store.operator();
        let Ok(buf) = op.read(path).await else {
            return false;
        };
        let mut bytes = buf.to_vec();
        if bytes.is_empty() {
            return false;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        bytes[0] ^= 0xff;
        op.write(path, bytes).await.expect("overwrite");
        true
    }
}

#[async_trait]
impl Harness for OpendalHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        // A blob stored whole, else the first part of one stored in parts.
        self.damage(&OpendalStore::blob_path(digest)).await
            || self.damage(&OpendalStore::part_path(digest, 0)).await
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.damage(&OpendalStore::entry_path(key)).await
    }

    fn large_blob_bytes(&self) -> u64 {
        // 256 MiB still catches any store that buffers a whole blob, and keeps CI quick.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }
}

/// `larder serve` over a temporary directory, on a free loopback port, until dropped.
struct DavServer {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), larder_server::ServerError>>>,
    _dir: tempfile::TempDir,
}

impl DavServer {
    async fn start() -> DavServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = larder_server::ServerConfig::new(
            dir.path().join("cache"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        let server = larder_server::Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        DavServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_fs_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("opendal+fs://{}", dir.path().join("store").display());
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(store.streams_blobs(), "fs takes a blob in several writes");
    let cap = store.capability();
    assert!(cap.list && cap.delete && !cap.trim, "{cap:?}");
    run_all(&OpendalHarness {
        store: Arc::new(store),
    })
    .await;
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
async fn conformance_webdav_service_against_larder_serve() {
    let server = DavServer::start().await;
    // larder serve's WebDAV tree answers PROPFIND about one path only: no listing.
    let url = format!(
        "opendal+webdav://{}/dav/conformance?tls=false&list=false",
        server.addr
    );
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        !store.streams_blobs(),
        "WebDAV takes an object in one PUT: large blobs go in parts"
    );
    let cap = store.capability();
    assert!(!cap.list && cap.delete && !cap.trim, "{cap:?}");
    let store = Arc::new(store);
    run_all(&OpendalHarness {
        store: store.clone(),
    })
    .await;
    // Without listing there are no stats, and the error says why.
    let err = store.stats().await.expect_err("no listing");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blob_in_parts_survives_a_lost_part_as_a_miss() {
    let server = DavServer::start().await;
    let url = format!(
        "opendal+webdav://{}/dav/parts?tls=false&list=false&part_size=1MiB",
        server.addr
    );
    let store = OpendalStore::from_url(&url).expect("store");
    let bytes: Vec<u8> = (0..(3 << 20) + 17u32).map(|i| (i % 251) as u8).collect();
    let digest = store
        .put_blob_bytes(bytes.clone().into())
        .await
        .expect("put");
    let op = store.operator();
    assert!(
        op.exists(&OpendalStore::manifest_path(&digest))
            .await
            .expect("stat")
    );
    assert!(
        !op.exists(&OpendalStore::blob_path(&digest))
            .await
            .expect("stat")
    );
    let got = store
        .get_blob_bytes(&digest, 1 << 30)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, bytes);
    // A part goes missing: the read fails as corrupt and the blob is gone (a miss next time).
    op.delete(&OpendalStore::part_path(&digest, 2))
        .await
        .expect("delete part");
    let err = store
        .get_blob_bytes(&digest, 1 << 30)
        .await
        .expect_err("a part is missing");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(store.get_blob(&digest).await.expect("get").is_none());
    assert_eq!(
        store.find_missing(&[digest]).await.expect("find"),
        vec![digest]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trim_is_declared_unsupported_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        OpendalStore::from_url(&format!("opendal+fs://{}", dir.path().display())).expect("store");
    assert!(!store.capability().trim);
    let mut opts = TrimOptions::default();
    opts.max_bytes = Some(1);
    let err = store.trim(&opts, None).await.expect_err("no trim");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("not implemented yet"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_server_is_a_temporary_error_quickly() {
    let port = larder_testservers::free_ports(1).expect("port")[0];
    let store = OpendalStoreBuilder::from_url(&format!(
        "opendal+webdav://127.0.0.1:{port}/dav/x?tls=false"
    ))
    .expect("url")
    .with_retries(1)
    .build()
    .expect("store");
    let started = Instant::now();
    let err = store
        .get_entry(&Key::new("k").expect("key"))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_server_is_a_temporary_error_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let store = OpendalStoreBuilder::from_url(&format!(
        "opendal+webdav://127.0.0.1:{port}/dav/x?tls=false&timeout_ms=500"
    ))
    .expect("url")
    .with_retries(1)
    .build()
    .expect("store");
    let started = Instant::now();
    let err = store
        .get_entry(&Key::new("k").expect("key"))
        .await
        .expect_err("nothing answers");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn services_not_compiled_in_name_their_feature() {
    let err = OpendalStore::from_url("opendal+sftp://host/dir").expect_err("not built in");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("services-sftp"), "{err}");
}

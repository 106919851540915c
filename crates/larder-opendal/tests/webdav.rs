//! The shared conformance suite against OpenDAL's `webdav` service and `larder serve`'s WebDAV
//! tree (`/dav`), started in this process on a free loopback port; blobs in parts; errors of a
//! dead or hanging server. (Each conformance run has its own test binary: the suite measures the
//! process's memory, which another run in the same process would blur.)

use std::time::{Duration, Instant};

use larder_bucket::testkit::conformance;
use larder_core::{ErrorKind, Key, Store, StoreExt};
use larder_opendal::{BucketBuilder, OpendalStore, OpendalStoreBuilder};

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
async fn conformance_webdav_service_against_larder_serve() {
    let server = DavServer::start().await;
    // larder serve's WebDAV tree answers PROPFIND about one path only: no listing.
    let url = format!(
        "opendal+webdav://{}/dav/conformance?tls=false&list=false",
        server.addr
    );
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        !store.backend().streams_blobs(),
        "WebDAV takes an object in one PUT: large blobs go in parts"
    );
    let cap = store.capability();
    assert!(!cap.list && cap.delete && !cap.trim, "{cap:?}");
    conformance(store.clone()).await;
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
    let op = store.backend().operator();
    assert!(
        op.exists(&larder_opendal::manifest_path(&digest))
            .await
            .expect("stat")
    );
    assert!(
        !op.exists(&larder_opendal::blob_path(&digest))
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
    op.delete(&larder_opendal::part_path(&digest, 2))
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

/// Nothing listening, and a server that accepts connections and never answers: temporary
/// errors, within a few seconds (one retry; a 500 ms time-out for the silent one).
#[tokio::test(flavor = "multi_thread")]
async fn dead_and_hanging_servers_are_temporary_errors_quickly() {
    let dead = larder_testservers::free_ports(1).expect("port")[0];
    let hanging = larder_bucket::testkit::silent_port();
    for (port, query, bound) in [(dead, "", 10), (hanging, "&timeout_ms=500", 8)] {
        let url = format!("opendal+webdav://127.0.0.1:{port}/dav/x?tls=false{query}");
        let builder = OpendalStoreBuilder::from_url(&url).expect("url");
        let store = builder.with_retries(1).build().expect("store");
        let started = Instant::now();
        let key = Key::new("k").expect("key");
        let err = store.get_entry(&key).await.expect_err("no answer");
        assert_eq!(err.kind(), ErrorKind::Temporary, "{url}: {err}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(bound), "{url}: {took:?}");
    }
}

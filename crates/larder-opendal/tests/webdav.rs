//! The shared conformance suite against OpenDAL's `webdav` service and `larder serve`'s WebDAV
//! tree (`/dav`), started in this process on a free loopback port, one trial per check
//! (`webdav::…`, including a dead and a hanging server); blobs in parts.

use larder_bucket::testkit::BucketHarness;
use larder_core::testkit::Suites;
use larder_core::{ErrorKind, Store, StoreExt};
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

/// The webdav service's store on `server`, with what the docs promise of it: no listing (larder
/// serve's WebDAV tree answers PROPFIND about one path only), so no stats, and the error says
/// why; large blobs go in parts.
async fn dav_store(server: &DavServer) -> OpendalStore {
    let url = format!(
        "opendal+webdav://{}/dav/conformance?tls=false&list=false",
        server.addr
    );
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        !store.backend().inner().streams_blobs(),
        "WebDAV takes an object in one PUT: large blobs go in parts"
    );
    let cap = store.capability();
    assert!(!cap.list && cap.delete && !cap.trim, "{cap:?}");
    let err = store.stats().await.expect_err("no listing");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    store
}

/// A store at `addr` (nothing there, or a server that never answers) that gives up quickly.
fn at(addr: std::net::SocketAddr) -> OpendalStore {
    let url = format!("opendal+webdav://{addr}/dav/x?tls=false&timeout_ms=700");
    let builder = OpendalStoreBuilder::from_url(&url).expect("url");
    builder.with_retries(1).build().expect("store")
}

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
    let op = store.backend().inner().operator();
    assert!(
        op.exists(&store.backend().manifest_key(digest.to_hex()))
            .await
            .expect("stat")
    );
    assert!(!op.exists(&store.blob_key(&digest)).await.expect("stat"));
    let got = store
        .get_blob_bytes(&digest, 1 << 30)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, bytes);
    // A part goes missing: the read fails as corrupt and the blob is gone (a miss next time).
    op.delete(&store.backend().part_key(digest.to_hex(), 2))
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

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("webdav", || async {
            let server = DavServer::start().await;
            let store = dav_store(&server).await;
            Ok(BucketHarness::new(store).at_endpoint(at).keep(server))
        })
        .test(
            "large_blob_in_parts_survives_a_lost_part_as_a_miss",
            large_blob_in_parts_survives_a_lost_part_as_a_miss,
        )
        .run()
}

//! The read-through replica: a server in front of another one (reached with the real HTTP
//! client store), fetching misses upstream and uploading its writes from a durable queue.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use larder_core::Store;
use larder_http::HttpStore;

fn upstream_of(s: &TestServer) -> Arc<dyn Store> {
    Arc::new(HttpStore::new(s.url("/v1")).expect("http store"))
}

fn value_path(i: usize) -> String {
    format!("/ccache/{:040x}", 0xabc000 + i)
}

async fn eventually_200(s: &TestServer, path: &str) -> bool {
    for _ in 0..200 {
        if s.get(path).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_are_fetched_upstream_and_writes_uploaded() {
    let origin = TestServer::start().await;
    let upstream = upstream_of(&origin);
    let replica = TestServer::start_with(|c| c.with_upstream(upstream, 2)).await;

    // Written at the origin, read through the replica (a large value: a blob is copied too).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(origin.put(&value_path(1), big.clone()).await, 201);
    let (status, body) = replica.get(&value_path(1)).await;
    assert_eq!(status, 200);
    assert_eq!(body.to_vec(), big);
    // A miss everywhere is a plain miss.
    assert_eq!(replica.get(&value_path(2)).await.0, 404);

    // Written at the replica, uploaded to the origin in the background.
    assert_eq!(replica.put(&value_path(3), vec![9u8; 5000]).await, 201);
    assert!(
        eventually_200(&origin, &value_path(3)).await,
        "never uploaded"
    );
    assert_eq!(origin.get(&value_path(3)).await.1.to_vec(), vec![9u8; 5000]);

    let metrics = String::from_utf8(replica.get("/metrics").await.1.to_vec()).expect("utf-8");
    assert!(
        metrics.contains("larder_upstream_fetched_total 1\n"),
        "{metrics}"
    );
    for _ in 0..100 {
        let m = String::from_utf8(replica.get("/metrics").await.1.to_vec()).expect("utf-8");
        if m.contains("larder_upstream_uploaded_total 1\n")
            && m.contains("larder_upstream_queued 0\n")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = String::from_utf8(replica.get("/metrics").await.1.to_vec()).expect("utf-8");
    assert!(metrics.contains("larder_upstream_queued 0\n"), "{metrics}");

    // What was fetched is kept: the replica serves it without the origin.
    drop(origin);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(replica.get(&value_path(1)).await.0, 200);
    // And a dead upstream is a miss, not an error.
    assert_eq!(replica.get(&value_path(4)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_queue_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("replica");
    // An upstream nobody listens on: uploads fail and stay queued.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let dead_store: Arc<dyn Store> = Arc::new(
        HttpStore::builder(format!("http://{dead}/v1"))
            .retries(0, Duration::from_millis(10))
            .build()
            .expect("http store"),
    );
    {
        let replica = TestServer::start_in(&root, |c| c.with_upstream(dead_store, 1)).await;
        assert_eq!(replica.put(&value_path(7), vec![7u8; 100]).await, 201);
        let queued = std::fs::read_dir(root.join("upstream-queue"))
            .expect("queue dir")
            .count();
        assert_eq!(queued, 1, "the write is queued for upload");
        replica.stop().await;
    }
    // Restarted with a live upstream: the queued write goes up.
    let origin = TestServer::start().await;
    let upstream = upstream_of(&origin);
    let _replica = TestServer::start_in(&root, |c| c.with_upstream(upstream, 1)).await;
    assert!(
        eventually_200(&origin, &value_path(7)).await,
        "queue not resumed"
    );
    for _ in 0..100 {
        if std::fs::read_dir(root.join("upstream-queue"))
            .expect("queue dir")
            .count()
            == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the queue item was not removed after the upload");
}

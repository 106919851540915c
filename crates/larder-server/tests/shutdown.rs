//! Graceful shutdown: an upload in flight when the signal comes is finished and stored, and
//! the server then stops.

use std::time::Duration;

use bytes::Bytes;
use larder_core::Digest;
use larder_server::{Server, ServerConfig};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_uploads_in_flight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let store = server.store();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let chunks: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 64 << 10])).collect();
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let d = Digest::of(&all);
    let slow = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        it.next().map(|c| (Ok::<_, std::io::Error>(c), it))
    });
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(format!("http://{addr}/v1/blobs/{d}"))
            .header("x-larder-size", all.len())
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    stop.send(()).expect("signal");
    let resp = upload.await.expect("join").expect("upload");
    assert_eq!(resp.status().as_u16(), 201);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the server stops")
        .expect("join")
        .expect("run");
    assert!(store.find_missing(&[d]).await.expect("find").is_empty());
    // It no longer accepts connections.
    assert!(
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
}

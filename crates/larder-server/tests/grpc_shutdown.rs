//! Graceful shutdown with gRPC streams in flight: a ByteStream Read and a ByteStream Write that
//! are still streaming when the stop signal comes are finished and the server then stops; a
//! client too slow to finish by `--shutdown-timeout` is cut at that deadline, and the server
//! stops all the same, leaving nothing of the cut upload behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{grpc_channel as channel, pseudo_random, reapi_digest as digest, sha256_hex};
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    Digest, FindMissingBlobsRequest,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{
    ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use larder_reapi::tonic::transport::Channel;
use larder_server::{Limits, Server, ServerConfig, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bytes per WriteRequest.
const CHUNK: usize = 64 << 10;

/// A server over `root`, and what stops it.
async fn start(
    root: &Path,
    shutdown_timeout: Duration,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<Result<(), ServerError>>,
) {
    let mut limits = Limits::default();
    limits.shutdown_timeout = shutdown_timeout;
    let config = ServerConfig::new(root, "127.0.0.1:0".parse().expect("addr")).with_limits(limits);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop, running)
}

/// Store `blob` through Bazel's HTTP CAS.
async fn put_over_http(addr: std::net::SocketAddr, blob: &[u8]) {
    let status = reqwest::Client::new()
        .put(format!("http://{addr}/bazel/cas/{}", sha256_hex(blob)))
        .body(blob.to_vec())
        .send()
        .await
        .expect("PUT")
        .status();
    assert_eq!(status.as_u16(), 200);
}

/// A ByteStream Read of `d` that reads a message every `pause`, and says when its first
/// message has arrived (after `stall_after` messages it stops reading until `resume`). Returns
/// the bytes read, and the error that ended it early, if any.
fn slow_read(
    ch: Channel,
    d: &Digest,
    pause: Duration,
    started: oneshot::Sender<()>,
    stall: Option<(usize, oneshot::Receiver<()>)>,
) -> JoinHandle<(Vec<u8>, Option<larder_reapi::tonic::Status>)> {
    let request = ReadRequest {
        resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
        read_offset: 0,
        read_limit: 0,
    };
    tokio::spawn(async move {
        let mut bs = ByteStreamClient::new(ch);
        let mut stream = match bs.read(request).await {
            Ok(r) => r.into_inner(),
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut started = Some(started);
        let mut stall = stall;
        let mut out = Vec::new();
        let mut messages = 0;
        loop {
            match stream.message().await {
                Ok(Some(m)) => out.extend_from_slice(&m.data),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
            messages += 1;
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
            if stall.as_ref().is_some_and(|(after, _)| messages == *after)
                && let Some((_, resume)) = stall.take()
            {
                let _ = resume.await;
            }
            tokio::time::sleep(pause).await;
        }
    })
}

/// A ByteStream Write of `blob` in 64 KiB messages, one every `pause`; says when `started_at`
/// messages have been handed to the transport. Returns the committed size, or the error.
fn slow_write(
    ch: Channel,
    blob: Vec<u8>,
    pause: Duration,
    started_at: usize,
    started: oneshot::Sender<()>,
) -> JoinHandle<Result<i64, larder_reapi::tonic::Status>> {
    let d = digest(&blob);
    let name = format!("uploads/7/blobs/{}/{}", d.hash, d.size_bytes);
    let requests: Vec<WriteRequest> = blob
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: (i * CHUNK) as i64,
            finish_write: (i + 1) * CHUNK >= blob.len(),
            data: c.to_vec(),
        })
        .collect();
    let paced = futures::stream::unfold(
        (requests.into_iter().enumerate(), Some(started)),
        move |(mut it, mut started)| async move {
            let (i, r) = it.next()?;
            if i == started_at
                && let Some(s) = started.take()
            {
                let _ = s.send(());
            }
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            Some((r, (it, started)))
        },
    );
    tokio::spawn(async move {
        let mut bs = ByteStreamClient::new(ch);
        bs.write(paced).await.map(|r| r.into_inner().committed_size)
    })
}

/// Files left in the server's gRPC spool directory.
fn spooled(root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("server-tmp").join("grpc"))
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

/// Which of `digests` a fresh server on `root` does not have.
async fn missing_after_restart(root: &Path, digests: Vec<Digest>) -> Vec<Digest> {
    let (addr, stop, running) = start(root, Duration::from_secs(5)).await;
    let missing = ContentAddressableStorageClient::new(channel(addr).await)
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: digests,
            ..Default::default()
        })
        .await
        .expect("find missing")
        .into_inner()
        .missing_blob_digests;
    let _ = stop.send(());
    running.await.expect("join").expect("second server ran");
    missing
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_grpc_streams_in_flight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");
    let (addr, stop, running) = start(&root, Duration::from_secs(30)).await;
    // A 16 MiB blob read at one 1 MiB message per 100 ms (the client's flow-control window
    // holds the server back), and a 4 MiB upload at one 64 KiB message per 25 ms: each takes
    // about 1.5 s, most of it after the signal.
    let big = pseudo_random("read while stopping", 16 << 20);
    put_over_http(addr, &big).await;
    let up = pseudo_random("write while stopping", 4 << 20);
    let ch = channel(addr).await;
    let (read_started, read_going) = oneshot::channel();
    let reading = slow_read(
        ch.clone(),
        &digest(&big),
        Duration::from_millis(100),
        read_started,
        None,
    );
    let (write_started, write_going) = oneshot::channel();
    let writing = slow_write(ch, up.clone(), Duration::from_millis(25), 4, write_started);
    read_going.await.expect("the read started");
    write_going.await.expect("the write started");

    stop.send(()).expect("signal");
    let (read, error) = reading.await.expect("join");
    assert!(error.is_none(), "the read failed: {error:?}");
    assert!(read == big, "read {} of {} bytes", read.len(), big.len());
    let committed = writing.await.expect("join").expect("the write completed");
    assert_eq!(committed, up.len() as i64);
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the server stops once its streams are done")
        .expect("join")
        .expect("run");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting connections"
    );
    // The upload was stored before the server stopped, and nothing is left in its spool.
    assert_eq!(spooled(&root), Vec::<std::path::PathBuf>::new());
    let missing = missing_after_restart(&root, vec![digest(&up), digest(&big)]).await;
    assert!(missing.is_empty(), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cuts_grpc_streams_too_slow_for_the_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");
    let deadline = Duration::from_secs(1);
    let (addr, stop, running) = start(&root, deadline).await;
    // A read whose client stops reading after its first message, and a 4 MiB upload at one
    // 64 KiB message per 200 ms (13 s): neither can finish within the deadline.
    let big = pseudo_random("read too slowly", 8 << 20);
    put_over_http(addr, &big).await;
    let up = pseudo_random("write too slowly", 4 << 20);
    let ch = channel(addr).await;
    let (read_started, read_going) = oneshot::channel();
    let (resume, resumed) = oneshot::channel();
    let reading = slow_read(
        ch.clone(),
        &digest(&big),
        Duration::ZERO,
        read_started,
        Some((1, resumed)),
    );
    let (write_started, write_going) = oneshot::channel();
    let writing = slow_write(ch, up.clone(), Duration::from_millis(200), 2, write_started);
    read_going.await.expect("the read started");
    write_going.await.expect("the write started");

    let signalled = Instant::now();
    stop.send(()).expect("signal");
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the server stops at its shutdown deadline")
        .expect("join")
        .expect("run");
    let took = signalled.elapsed();
    // It waited for the streams until the deadline, then cut them.
    assert!(took >= deadline, "stopped after {took:?}");
    let write = writing.await.expect("join");
    assert!(write.is_err(), "the cut upload was acknowledged: {write:?}");
    let _ = resume.send(());
    let (read, error) = reading.await.expect("join");
    assert!(
        error.is_some() && read.len() < big.len(),
        "the cut read ended with {} of {} bytes and {error:?}",
        read.len(),
        big.len()
    );
    // Nothing of the cut upload is left: no spool file, no blob.
    assert_eq!(spooled(&root), Vec::<std::path::PathBuf>::new());
    let missing = missing_after_restart(&root, vec![digest(&up), digest(&big)]).await;
    assert_eq!(missing, vec![digest(&up)]);
}

//! Connections spread over several connection runtimes (`Limits::connection_threads`) still
//! obey the server-wide bounds: the connection limit counts every runtime's connections, and
//! the stop signal drains the connections of every runtime (uploads in flight finish, idle
//! connections close) before the server returns.

mod common;

use std::time::Duration;

use common::TestServer;
use larder_server::{Limits, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than anything below should take: a connection still open then was not closed.
const PATIENCE: Duration = Duration::from_secs(20);
/// More runtimes than the test machine may have CPUs, so that connections land on several.
const THREADS: usize = 3;

/// Read until the server closes the connection (or resets it); all that was read.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    common::read_to_close(tcp, PATIENCE).await
}

/// Send a keep-alive `GET /healthz` on `tcp` and read its whole answer (a fixed-length one).
async fn healthz(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(tcp).await
}

/// Read one response with a `Content-Length` body from `tcp`, leaving the connection open.
async fn read_response(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return;
                }
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer in time");
    out
}

/// `larder_connections` from `/metrics`.
async fn open_connections(s: &TestServer) -> u64 {
    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    text.lines()
        .find_map(|l| l.strip_prefix("larder_connections ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no larder_connections in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_limit_counts_the_connections_of_every_runtime() {
    let mut l = Limits::default();
    l.max_connections = 5;
    l.connection_threads = THREADS;
    let s = TestServer::start_with(move |c| c.with_limits(l)).await;
    // Four served keep-alive connections, spread over the runtimes, plus the client's own
    // connection for /metrics make five.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        let answer = healthz(&mut tcp).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        held.push(tcp);
    }
    assert_eq!(open_connections(&s).await, 5);
    let mut over = TcpStream::connect(s.addr).await.expect("connect");
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let refused = read_to_close(&mut over).await;
    assert!(
        refused.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    // The held connections are still served, and closing two frees two slots.
    for tcp in &mut held {
        let answer = healthz(tcp).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    held.truncate(2);
    let freed = tokio::time::timeout(PATIENCE, async {
        while open_connections(&s).await > 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "closed connections were not counted out");
    let mut again = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        let answer = healthz(&mut tcp).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        again.push(tcp);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_drains_the_connections_of_every_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut l = Limits::default();
    l.connection_threads = THREADS;
    l.shutdown_timeout = Duration::from_secs(600);
    let config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr")).with_limits(l);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // Twice as many uploads in flight as runtimes, each with half its body sent, then as many
    // idle keep-alive connections as runtimes, on whichever runtimes accept them.
    let values: Vec<Vec<u8>> = (0..2 * THREADS)
        .map(|i| common::pseudo_random(&format!("value {i}"), 2048))
        .collect();
    let keys: Vec<String> = (0..values.len())
        .map(|i| format!("{:040x}", i + 1))
        .collect();
    let mut uploads = Vec::new();
    for (key, value) in keys.iter().zip(&values) {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "PUT /ccache/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            value.len()
        );
        tcp.write_all(head.as_bytes()).await.expect("write head");
        tcp.write_all(&value[..1024]).await.expect("write half");
        uploads.push(tcp);
    }
    let mut idle = Vec::new();
    for _ in 0..THREADS {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let answer = healthz(&mut tcp).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        idle.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("signal");

    // Idle connections close at once, on every runtime.
    for tcp in &mut idle {
        assert!(read_to_close(tcp).await.is_empty());
    }
    // The server waits for the uploads, which then finish and are stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !running.is_finished(),
        "the server stopped with uploads in flight"
    );
    for (tcp, value) in uploads.iter_mut().zip(&values) {
        tcp.write_all(&value[1024..]).await.expect("write rest");
    }
    for tcp in &mut uploads {
        let answer = read_to_close(tcp).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 20"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the server stops once the uploads are done")
        .expect("join")
        .expect("run");
    assert!(TcpStream::connect(addr).await.is_err());
    // Every upload was stored: a new server over the directory serves it.
    let s = TestServer::start_in(dir.path(), |c| c).await;
    for (key, value) in keys.iter().zip(&values) {
        let (status, body) = s.get(&format!("/ccache/{key}")).await;
        assert_eq!(status, 200, "{key}");
        assert_eq!(&body[..], &value[..], "{key}");
    }
    s.stop().await;
}

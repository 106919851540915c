//! Issue 16's resource attacks on a real server over loopback, each a regression test: silent
//! and partial-header sockets, idle keep-alive connections, more connections than the limit,
//! a silent upload holding a disk reservation, a multipart body without a boundary, oversized
//! native entries, and a stop signal with a partial request open. Time-outs are configured
//! short here; the bounds the tests wait for are generous multiples of them.

mod common;

use std::time::Duration;

use common::TestServer;
use larder_server::{Limits, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any time-out configured below: a connection still open then was not closed.
const PATIENCE: Duration = Duration::from_secs(20);

/// `larder_limit_trips_total{limit="<limit>"}` from `/metrics`.
async fn trips(s: &TestServer, limit: &str) -> u64 {
    gauge(s, &format!("larder_limit_trips_total{{limit=\"{limit}\"}}")).await
}

/// A metric's value from `/metrics`.
async fn gauge(s: &TestServer, name: &str) -> u64 {
    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Read until the server closes the connection (or resets it); all that was read.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    common::read_to_close(tcp, PATIENCE).await
}

fn limits(f: impl FnOnce(&mut Limits)) -> impl FnOnce(ServerConfig) -> ServerConfig {
    let mut l = Limits::default();
    f(&mut l);
    move |c| c.with_limits(l)
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_partial_header_connections_are_closed_at_the_header_timeout() {
    let s = TestServer::start_with(limits(|l| l.header_timeout = Duration::from_millis(500))).await;
    let mut silent = TcpStream::connect(s.addr).await.expect("connect");
    let mut partial = TcpStream::connect(s.addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // After a first request, the next head on a kept-alive connection is bounded too.
    let mut second = TcpStream::connect(s.addr).await.expect("connect");
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answered = Vec::new();
    let mut buf = [0u8; 1024];
    while !answered.ends_with(b"ok\n") {
        let n = second.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before answering");
        answered.extend_from_slice(&buf[..n]);
    }
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    assert!(read_to_close(&mut silent).await.is_empty());
    assert!(read_to_close(&mut partial).await.is_empty());
    assert!(read_to_close(&mut second).await.is_empty());
    assert!(trips(&s, "header_timeout").await >= 3);
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_request_head_sent_a_byte_at_a_time_is_bounded_by_the_header_timeout() {
    let s = TestServer::start_with(limits(|l| l.header_timeout = Duration::from_millis(500))).await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answered = Vec::new();
    let mut buf = [0u8; 1024];
    while !answered.ends_with(b"ok\n") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before answering");
        answered.extend_from_slice(&buf[..n]);
    }
    // Each byte is traffic, so the idle time-out never runs out; the head's time-out, counted
    // from the end of the first response, does.
    let (mut rx, mut tx) = tcp.into_split();
    let drip = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if tx.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    drip.abort();
    assert!(
        closed.is_ok(),
        "the server kept the dripping connection open"
    );
    assert!(trips(&s, "header_timeout").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed() {
    let s = TestServer::start_with(limits(|l| {
        l.idle_timeout = Duration::from_millis(500);
        l.header_timeout = Duration::from_secs(60);
    }))
    .await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answered = read_to_close(&mut tcp).await;
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    assert!(trips(&s, "idle_timeout").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_get_503_and_the_server_stays_answerable() {
    let s = TestServer::start_with(limits(|l| {
        l.max_connections = 4;
        l.header_timeout = Duration::from_secs(1);
    }))
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    // Give the accept loop the time to take them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    // The silent connections are closed at the header time-out, and the server answers again.
    for tcp in &mut held {
        read_to_close(tcp).await;
    }
    assert_eq!(s.get("/healthz").await.0, 200);
    assert!(trips(&s, "connections").await >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_upload_fails_on_the_minimum_rate_and_gives_its_reservation_back() {
    const DECLARED: u64 = 100 << 20;
    let s = TestServer::start_with(limits(|l| {
        // Fast enough that the first 2 MiB earn little time beyond the grace.
        l.min_upload_rate = 16 << 20;
        l.upload_grace = Duration::from_millis(1500);
        l.max_reserved_bytes = DECLARED + (DECLARED / 2);
    }))
    .await;
    let key = "0123456789abcdef0123456789abcdef01234567";
    let head = |k: &str| {
        format!("PUT /ccache/{k} HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n\r\n")
    };
    // More than the in-memory spool, so that the body goes to a file with its reservation.
    let start = vec![7u8; 2 << 20];
    let mut first = TcpStream::connect(s.addr).await.expect("connect");
    first.write_all(head(key).as_bytes()).await.expect("write");
    first.write_all(&start).await.expect("write");
    let mut reserved = 0;
    for _ in 0..100 {
        reserved = gauge(&s, "larder_reserved_bytes").await;
        if reserved == DECLARED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reserved, DECLARED, "the declared length is reserved");
    // A second such upload would pass the total: it is received without a reservation.
    let other = "1123456789abcdef0123456789abcdef01234567";
    let mut second = TcpStream::connect(s.addr).await.expect("connect");
    second
        .write_all(head(other).as_bytes())
        .await
        .expect("write");
    second.write_all(&start).await.expect("write");
    // Both fall silent: both fail once under the rate, and the reservation is given back.
    let answer = read_to_close(&mut first).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    read_to_close(&mut second).await;
    assert_eq!(gauge(&s, "larder_reserved_bytes").await, 0);
    assert!(trips(&s, "reservation").await >= 1);
    assert!(trips(&s, "upload_rate").await >= 2);
    assert_eq!(s.get(&format!("/ccache/{key}")).await.0, 404);
    let spool = s.root.join("server-tmp");
    assert_eq!(std::fs::read_dir(&spool).expect("spool dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_with_a_partial_request_open_ends_within_the_shutdown_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut l = Limits::default();
    l.shutdown_timeout = Duration::from_millis(500);
    // Long enough that only the shutdown deadline can end the connections.
    l.header_timeout = Duration::from_secs(600);
    l.idle_timeout = Duration::from_secs(600);
    l.min_upload_rate = 0;
    let config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr")).with_limits(l);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // An upload that has sent part of its body and then waits.
    let mut upload = TcpStream::connect(addr).await.expect("connect");
    upload
        .write_all(b"PUT /ccache/0123456789abcdef0123456789abcdef01234567 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("signal");
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the server stops by its deadline")
        .expect("join")
        .expect("run");
    read_to_close(&mut partial).await;
    read_to_close(&mut upload).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_with_prior_knowledge_is_served_on_the_plain_port() {
    let s = TestServer::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = h2
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("GET over h2c");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 200);
    let key = "0123456789abcdef0123456789abcdef01234567";
    let put = h2
        .put(s.url(&format!("/ccache/{key}")))
        .body(vec![5u8; 300_000])
        .send()
        .await
        .expect("PUT over h2c");
    assert_eq!(put.status().as_u16(), 201);
    let got = h2
        .get(s.url(&format!("/ccache/{key}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(got.bytes().await.expect("body").len(), 300_000);
    // HTTP/1.1 goes on on the same port.
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_closes_connections_with_nothing_in_flight_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut l = Limits::default();
    // Only closing what has nothing in flight can make the server stop in time here.
    l.shutdown_timeout = Duration::from_secs(600);
    l.header_timeout = Duration::from_secs(600);
    l.idle_timeout = Duration::from_secs(600);
    let config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr")).with_limits(l);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("signal");
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the server stops without waiting for its deadline")
        .expect("join")
        .expect("run");
    read_to_close(&mut partial).await;
    read_to_close(&mut silent).await;
    let answered = read_to_close(&mut idle).await;
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
}

//! No 40 ms stall on uploads from clients that write the headers and the body separately.
//!
//! ccache's HTTP client (and others) sends a PUT's headers in one write and its body in a
//! second, with Nagle's algorithm on: the body waits until the headers are acknowledged. If
//! the server's kernel delays that ACK (Linux does, by 40 ms, on a connection that has been
//! replying), every upload takes 40 ms more. These tests play such a client over a raw socket
//! and check that the median PUT is well below 40 ms. They test the absence of that stall,
//! not the server's speed: the bound is loose on purpose (an idle loopback PUT takes well
//! under a millisecond), so a slow CI machine does not fail them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use larder_server::{Server, ServerConfig, TlsFiles};

/// PUTs per run.
const ROUNDS: usize = 20;
/// The median PUT must take less than this; a delayed ACK costs 40 ms.
const BOUND: Duration = Duration::from_millis(15);
/// A ccache-sized object: larger than one write's worth of headers, smaller than one segment.
const BODY_LEN: usize = 3000;

/// Read one HTTP/1.1 response (status line, headers, a `Content-Length` body) from `stream`;
/// returns its status. `buf` keeps bytes read past the response.
fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> u16 {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).expect("read body");
        assert!(n > 0, "connection closed in a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
    status
}

/// One PUT of a ccache object as ccache sends it: headers in one write, body in another.
/// Returns how long it took, up to the whole response.
fn put(stream: &mut (impl Read + Write), buf: &mut Vec<u8>, round: usize) -> Duration {
    let key = format!("{:040x}", 0x5eed_0000 + round);
    let body = vec![u8::try_from(round % 251).expect("byte"); BODY_LEN];
    let head = format!(
        "PUT /ccache/{}/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ccache\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {BODY_LEN}\r\n\r\n",
        &key[..2],
        &key[2..]
    );
    let start = Instant::now();
    stream.write_all(head.as_bytes()).expect("write headers");
    stream.flush().expect("flush headers");
    stream.write_all(&body).expect("write body");
    stream.flush().expect("flush body");
    let status = read_response(stream, buf);
    let took = start.elapsed();
    assert_eq!(status, 201, "PUT {key}");
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A raw client socket with Nagle on, as ccache's is.
fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(false).expect("Nagle on");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    tcp
}

fn check(what: &str, times: Vec<Duration>) {
    let slowest = times.iter().max().copied().unwrap_or_default();
    let m = median(times);
    eprintln!("{what}: median {m:?}, slowest {slowest:?}");
    assert!(
        m < BOUND,
        "{what}: median PUT {m:?}, not under {BOUND:?} (a delayed-ACK stall?)"
    );
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client task")
}

#[tokio::test(flavor = "multi_thread")]
async fn split_puts_on_a_keep_alive_connection_do_not_stall() {
    let s = TestServer::start().await;
    let addr = s.addr;
    let times = blocking(move || {
        let mut tcp = connect(addr);
        let mut buf = Vec::new();
        (0..ROUNDS).map(|i| put(&mut tcp, &mut buf, i)).collect()
    })
    .await;
    check("keep-alive", times);
}

#[tokio::test(flavor = "multi_thread")]
async fn split_puts_on_fresh_connections_do_not_stall() {
    let s = TestServer::start().await;
    let addr = s.addr;
    let times = blocking(move || {
        (0..ROUNDS)
            .map(|i| put(&mut connect(addr), &mut Vec::new(), i))
            .collect()
    })
    .await;
    check("fresh connections", times);
}

#[tokio::test(flavor = "multi_thread")]
async fn split_puts_over_tls_do_not_stall() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let config = ServerConfig::new(
        dir.path().join("cache"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .with_tls(TlsFiles {
        cert: cert_path,
        key: key_path,
        client_ca: None,
    });
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .expect("trust the certificate");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let times = blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(client), name).expect("TLS client");
        // Each flushed write is one TLS record in one TCP write: headers, then body.
        let mut tls = rustls::StreamOwned::new(conn, connect(addr));
        let mut buf = Vec::new();
        (0..ROUNDS).map(|i| put(&mut tls, &mut buf, i)).collect()
    })
    .await;
    check("TLS keep-alive", times);
}

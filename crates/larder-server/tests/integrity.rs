//! Never a wrong body with a success status (issue 16 item 4): a blob damaged on disk is not
//! sent complete, whatever the protocol; and downloads the client stops reading hold no
//! blocking thread.

mod common;

use std::time::Duration;

use common::{TestServer, find_blob, flip, pseudo_random};
use larder_server::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_flipped_on_disk_is_never_sent_complete() {
    let s = TestServer::start().await;
    let key = "0123456789abcdef0123456789abcdef01234567";
    let path = format!("/ccache/{key}");
    // Several chunks; incompressible, so stored raw.
    for (len, at) in [
        (5 << 20, 1 << 20),
        (5 << 20, (5 << 20) - 1),
        (200 << 10, 100),
    ] {
        let value = pseudo_random(&format!("flipped {len} {at}"), len);
        assert_eq!(s.put(&path, value.clone()).await, 201);
        let blob = find_blob(&s.root, &value).expect("the stored blob");
        flip(&blob, at);
        // The status says so, or the response is cut short (before its head is complete, or
        // in its body): never 200 with all the bytes.
        let r = s.client.get(s.url(&path)).send().await;
        if let Ok(r) = r
            && r.status().as_u16() == 200
        {
            let body = r.bytes().await;
            assert!(
                body.is_err(),
                "a damaged blob of {len} bytes (byte {at} flipped) was sent complete with 200"
            );
        }
        // The damaged blob is gone: the next read is a miss.
        assert_eq!(s.get(&path).await.0, 404);
    }
}

/// Threads of this process.
fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_downloads_hold_no_blocking_thread() {
    const STALLED: usize = 50;
    let s = TestServer::start_with(|c| {
        let mut l = Limits::default();
        // Only the reader's design may release the threads here, not a time-out.
        l.idle_timeout = Duration::from_secs(600);
        c.with_limits(l)
    })
    .await;
    let key = "1123456789abcdef0123456789abcdef01234567";
    // Far more than the socket buffers take, so that every download stalls.
    let value = pseudo_random("stalled", 64 << 20);
    assert_eq!(s.put(&format!("/ccache/{key}"), value).await, 201);
    let mut held = Vec::new();
    for _ in 0..STALLED {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        tcp.write_all(format!("GET /ccache/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        held.push(tcp);
    }
    // Idle blocking threads end after tokio's 10 s keep-alive; threads blocked on a stalled
    // consumer would not.
    let Some(start) = threads() else {
        eprintln!("skipping the thread count: no /proc/self/status");
        return;
    };
    tokio::time::sleep(Duration::from_secs(14)).await;
    let later = threads().expect("threads");
    eprintln!("threads with {STALLED} stalled downloads: {start} at first, {later} after 14 s");
    assert!(
        later < STALLED as u64 / 2,
        "{later} threads for {STALLED} stalled downloads"
    );
    assert_eq!(s.get("/healthz").await.0, 200);
    drop(held);
}

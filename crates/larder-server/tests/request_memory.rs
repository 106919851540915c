//! Request bodies that used to grow the server's memory without bound (issue 16): a 1 GiB waf
//! multipart body with no boundary (1.1 GiB of RSS before), and native entries with too many
//! outputs or bytes. This binary holds only these tests, so that the process's peak RSS
//! (`VmHWM`) is the server's and the generating client's, measured around the attack.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::TestServer;
use larder_core::{Content, Entry, Output, OutputKind};
use larder_server::Limits;

/// The peak resident set size of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn trips(s: &TestServer, limit: &str) -> u64 {
    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    let name = format!("larder_limit_trips_total{{limit=\"{limit}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gigabyte_multipart_body_without_a_boundary_is_refused_in_bounded_memory() {
    const TOTAL: u64 = 1 << 30;
    const PIECE: usize = 1 << 20;
    let s = TestServer::start().await;
    let before = peak_rss();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sent);
    let piece = Bytes::from(vec![b'x'; PIECE]);
    // 1 GiB generated piece by piece: the client holds one piece at a time.
    let body = futures::stream::unfold(0u64, move |done| {
        let piece = piece.clone();
        let counted = Arc::clone(&counted);
        async move {
            (done < TOTAL).then(|| {
                counted.fetch_add(PIECE as u64, Ordering::Relaxed);
                (Ok::<_, std::io::Error>(piece), done + PIECE as u64)
            })
        }
    });
    let answer = s
        .client
        .post(s.url("/waf/0123456789abcdef/0"))
        .header("content-type", "multipart/form-data; boundary=never-sent")
        .header("content-length", TOTAL)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    // The server answers 413 and closes; a client still sending may see the close instead.
    if let Ok(r) = &answer {
        assert_eq!(r.status().as_u16(), 413);
    }
    let after = peak_rss();
    let sent = sent.load(Ordering::Relaxed);
    if let (Some(before), Some(after)) = (before, after) {
        eprintln!(
            "peak RSS: {} MiB before, {} MiB after; {} MiB of the body generated",
            before >> 20,
            after >> 20,
            sent >> 20
        );
        assert!(
            after.saturating_sub(before) < 128 << 20,
            "peak RSS grew by {} MiB",
            (after - before) >> 20
        );
    }
    assert!(
        sent < TOTAL / 4,
        "the server read {sent} bytes before refusing"
    );
    assert!(trips(&s, "multipart_preamble").await >= 1);
    assert_eq!(s.get("/healthz").await.0, 200);
}

fn entry_with(outputs: usize) -> Vec<u8> {
    let mut entry = Entry::new("k", "test");
    for i in 0..outputs {
        entry.outputs.push(Output {
            path: format!("out/{i}"),
            kind: OutputKind::File {
                content: Content::inline(vec![1, 2, 3]),
                executable: false,
            },
        });
    }
    entry.encode().expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn native_entries_over_their_bounds_are_413() {
    let s = TestServer::start_with(|c| {
        let mut l = Limits::default();
        l.max_entry_outputs = 100;
        l.max_entry_bytes = 64 << 10;
        c.with_limits(l)
    })
    .await;
    assert_eq!(s.put("/v1/entries/few", entry_with(100)).await, 201);
    // Too many outputs, and too many bytes (declared, and streamed without a length).
    assert_eq!(s.put("/v1/entries/many", entry_with(101)).await, 413);
    let big = entry_with(5000);
    assert!(big.len() > 64 << 10);
    assert_eq!(s.put("/v1/entries/big", big.clone()).await, 413);
    // Streamed without a length: refused once the bound is crossed; the server reads and
    // discards a modest rest so that the client, still writing, gets to read the answer.
    let chunked = s
        .client
        .put(s.url("/v1/entries/big"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            big.chunks(4096)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )))
        .send()
        .await
        .expect("the answer arrives: the server drains a modest body");
    assert_eq!(chunked.status().as_u16(), 413);
    assert!(trips(&s, "entry").await >= 3);
    assert_eq!(s.get("/v1/entries/big").await.0, 404);
    assert_eq!(s.get("/v1/entries/many").await.0, 404);
    assert_eq!(s.get("/v1/entries/few").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_on_disk_over_the_entry_limit_is_not_read() {
    // Written with the default limits (64 MiB at most), then served by a server that takes
    // entries of at most 64 KiB: it is a miss there, and left on disk.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");
    let big = entry_with(5000);
    assert!(big.len() > 64 << 10);
    {
        let s = TestServer::start_in(&root, |c| c).await;
        assert_eq!(s.put("/v1/entries/big", big.clone()).await, 201);
        assert_eq!(s.put("/v1/entries/few", entry_with(10)).await, 201);
        s.stop().await;
    }
    let s = TestServer::start_in(&root, |c| {
        let mut l = Limits::default();
        l.max_entry_bytes = 64 << 10;
        c.with_limits(l)
    })
    .await;
    assert_eq!(s.get("/v1/entries/big").await.0, 404);
    assert_eq!(s.get("/v1/entries/few").await.0, 200);
    s.stop().await;
    let s = TestServer::start_in(&root, |c| c).await;
    assert_eq!(s.get("/v1/entries/big").await.1, big, "kept, and whole");
}

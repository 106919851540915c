//! A 256 MiB upload streams through the server (native blob, and a Bazel CAS object that is
//! spooled to disk) with memory bounded far below its size.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::TestServer;
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use sha2::Digest as _;

const LEN: u64 = 256 << 20;
const CHUNK: usize = 1 << 20;

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// `LEN` pseudo-random bytes in `CHUNK`s, generated on the fly, sampling RSS into `peak`.
fn generated(peak: Arc<AtomicU64>) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let reader = blake3::Hasher::new_derive_key("large upload").finalize_xof();
    futures::stream::unfold((reader, 0u64), move |(mut reader, done)| {
        let peak = Arc::clone(&peak);
        async move {
            if done >= LEN {
                return None;
            }
            let n = (LEN - done).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            reader.fill(&mut buf);
            peak.fetch_max(rss(), Ordering::Relaxed);
            Some((Ok(Bytes::from(buf)), (reader, done + n as u64)))
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_256_mib_with_bounded_memory() {
    // The digests, computed first without holding the data.
    let (blake, sha) = {
        let mut b = DigestWriter::new();
        let mut s = sha2::Sha256::new();
        let mut st = Box::pin(generated(Arc::new(AtomicU64::new(0))));
        while let Some(Ok(c)) = st.next().await {
            b.update(&c);
            s.update(&c);
        }
        let sha: String = s.finalize().iter().map(|x| format!("{x:02x}")).collect();
        (b.finish(), sha)
    };
    let s = TestServer::start().await;
    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let started = std::time::Instant::now();
    let r = s
        .client
        .put(s.url(&format!("/v1/blobs/{blake}")))
        .header("x-larder-size", LEN)
        .body(reqwest::Body::wrap_stream(generated(Arc::clone(&peak))))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 201);
    let native_secs = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    let r = s
        .client
        .put(s.url(&format!("/bazel/cas/{sha}")))
        .body(reqwest::Body::wrap_stream(generated(Arc::clone(&peak))))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 200);
    let cas_secs = started.elapsed().as_secs_f64();

    // And back, verified as it streams.
    let r = s
        .client
        .get(s.url(&format!("/bazel/cas/{sha}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let mut check = sha2::Sha256::new();
    let mut n = 0u64;
    while let Some(c) = body.next().await {
        let c = c.expect("body");
        check.update(&c);
        n += c.len() as u64;
        peak.fetch_max(rss(), Ordering::Relaxed);
    }
    assert_eq!(n, LEN);
    let got: String = check
        .finalize()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(got, sha);

    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "256 MiB: native PUT {:.0} MB/s, bazel CAS PUT {:.0} MB/s, RSS grew by {} MiB",
        LEN as f64 / 1e6 / native_secs,
        LEN as f64 / 1e6 / cas_secs,
        grew >> 20
    );
    assert!(grew < 64 << 20, "memory grew by {grew} bytes");
}

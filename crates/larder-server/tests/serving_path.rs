//! The serving path (issue 14 item 5): a blob verified once is sent without hashing while its
//! file is unchanged; a file changed through the file system is verified again and never sent
//! whole when wrong; the background scrub finds and removes damaged blobs, counted in /metrics
//! and shown on /status.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, find_blob, flip, pseudo_random};
use larder_server::Scrub;

/// Longer than the coarse clock tick a just-written file's identity must age by before it is
/// trusted where change times are not fine-grained (see larder-fs's crate docs).
const SETTLE: Duration = Duration::from_millis(60);

/// The value of the metric line `name` (with its labels, as written) in `/metrics`.
async fn metric(s: &TestServer, name: &str) -> Option<f64> {
    let (status, body) = s.get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

async fn counter(s: &TestServer, name: &str) -> u64 {
    metric(s, name)
        .await
        .unwrap_or_else(|| panic!("{name} is not in /metrics")) as u64
}

const TRUSTED: &str = "larder_blob_reads_total{check=\"trusted\"}";
const HASHED: &str = "larder_blob_reads_total{check=\"hashed\"}";
const HASHED_BYTES: &str = "larder_blob_read_bytes_total{check=\"hashed\"}";

#[tokio::test(flavor = "multi_thread")]
async fn a_value_read_again_is_sent_without_hashing() {
    let s = TestServer::start_with(|c| c.with_scrub(Scrub::off())).await;
    let path = "/ccache/00112233445566778899aabbccddeeff00112233";
    let value = pseudo_random("trusted", 5 << 20);
    assert_eq!(s.put(path, value.clone()).await, 201);
    tokio::time::sleep(SETTLE).await;
    // Trusted already if the write's identity was recorded; else this read verifies it.
    let (status, body) = s.get(path).await;
    assert_eq!((status, body.len()), (200, value.len()));
    let (trusted, hashed, hashed_bytes) = (
        counter(&s, TRUSTED).await,
        counter(&s, HASHED).await,
        counter(&s, HASHED_BYTES).await,
    );
    for _ in 0..3 {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 200);
        assert!(body == value, "the bytes sent are the value");
    }
    assert_eq!(counter(&s, TRUSTED).await, trusted + 3);
    assert_eq!(counter(&s, HASHED).await, hashed, "no read verified");
    assert_eq!(
        counter(&s, HASHED_BYTES).await,
        hashed_bytes,
        "nothing hashed"
    );
    assert!(counter(&s, "larder_verified_blobs").await >= 1);
    assert!(
        metric(&s, "larder_scrub_passes_total").await.is_none(),
        "no scrub figures when it is off"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_blob_changed_on_disk_is_verified_and_never_sent_whole() {
    let s = TestServer::start_with(|c| c.with_scrub(Scrub::off())).await;
    for (i, (len, at)) in [(5usize << 20, 3 << 20), (200 << 10, 100)]
        .into_iter()
        .enumerate()
    {
        let path = format!("/ccache/{i:040x}");
        let value = pseudo_random(&format!("changed {len}"), len);
        assert_eq!(s.put(&path, value.clone()).await, 201);
        tokio::time::sleep(SETTLE).await;
        for _ in 0..2 {
            assert_eq!(s.get(&path).await.0, 200);
        }
        let trusted = counter(&s, TRUSTED).await;
        let corrupt = counter(&s, "larder_blob_read_corrupt_total").await;
        // A write through the file system: same inode and length, a new change time.
        flip(&find_blob(&s.root, &value).expect("the stored blob"), at);
        let r = s.client.get(s.url(&path)).send().await;
        if let Ok(r) = r
            && r.status().as_u16() == 200
        {
            assert!(
                r.bytes().await.is_err(),
                "a blob changed on disk was sent complete with 200"
            );
        }
        assert_eq!(s.get(&path).await.0, 404, "the damaged blob is gone");
        assert_eq!(
            counter(&s, TRUSTED).await,
            trusted,
            "not trusted once changed"
        );
        assert_eq!(
            counter(&s, "larder_blob_read_corrupt_total").await,
            corrupt + 1
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scrub_removes_a_damaged_blob_counts_it_and_shows_its_progress() {
    let s = TestServer::start_with(|c| {
        c.with_scrub(Scrub::at(Some(1 << 30), Duration::from_millis(100)))
    })
    .await;
    let good = pseudo_random("scrub good", 2 << 20);
    let bad = pseudo_random("scrub bad", 2 << 20);
    let (good_path, bad_path) = (format!("/ccache/{:040x}", 1), format!("/ccache/{:040x}", 2));
    assert_eq!(s.put(&good_path, good.clone()).await, 201);
    assert_eq!(s.put(&bad_path, bad.clone()).await, 201);
    let bad_file = find_blob(&s.root, &bad).expect("the stored blob");
    flip(&bad_file, 1 << 20);
    // The scrub passes every 100 ms: wait for the one that finds the damage.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&s, "larder_scrub_corrupt_total").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the scrub did not find the damaged blob"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!bad_file.exists(), "removed");
    assert_eq!(s.get(&bad_path).await.0, 404);
    let (status, body) = s.get(&good_path).await;
    assert_eq!(status, 200);
    assert!(body == good);
    assert!(counter(&s, "larder_scrub_passes_total").await >= 1);
    assert!(counter(&s, "larder_scrub_blobs_total").await >= 2);
    assert!(counter(&s, "larder_scrub_bytes_total").await >= 4 << 20);
    assert_eq!(counter(&s, "larder_scrub_rate_bytes").await, 1 << 30);
    assert!(metric(&s, "larder_scrub_pass_progress").await.is_some());
    let (status, body) = s.get("/status.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let scrub = &v["integrity"]["scrub"];
    assert_eq!(scrub["corrupt_removed"], 1, "{v}");
    assert!(scrub["passes"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert!(scrub["pass_blobs_total"].as_u64().is_some(), "{v}");
    assert!(scrub["last_pass_end_ms"].as_u64().is_some(), "{v}");
    let (status, html) = s.get("/status").await;
    assert_eq!(status, 200);
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains("<h2>Integrity</h2>"), "{html}");
    assert!(html.contains("1 damaged blobs removed"), "{html}");
    s.stop().await;
}

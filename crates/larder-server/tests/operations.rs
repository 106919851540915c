//! Operating the server: `/metrics`, `/status`, budgets kept while serving, and 507 when the
//! disk cannot take a write (reads go on).

mod common;

use std::time::Duration;

use common::TestServer;
use larder_core::TrimOptions;

/// A ccache-style value path for key number `i`.
fn ccache_path(i: usize) -> String {
    format!("/ccache/{:040x}", i + 1)
}

/// The value of the sample `name` (with its label set written as in the exposition) in
/// Prometheus text, if present.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_hits_misses_and_bytes_by_protocol() {
    let s = TestServer::start().await;
    assert_eq!(s.get(&ccache_path(0)).await.0, 404);
    assert_eq!(s.put(&ccache_path(0), vec![7u8; 1000]).await, 201);
    assert_eq!(s.get(&ccache_path(0)).await.0, 200);
    assert_eq!(s.get(&ccache_path(0)).await.0, 200);
    assert_eq!(s.get("/bazel/ac/nothex").await.0, 400);

    let (status, body) = s.get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).expect("utf-8 metrics");
    let ccache = |name: &str| sample(&text, &format!("larder_{name}{{protocol=\"ccache\"}}"));
    assert_eq!(ccache("hits_total"), Some(2), "{text}");
    assert_eq!(ccache("misses_total"), Some(1), "{text}");
    assert_eq!(ccache("received_bytes_total"), Some(1000), "{text}");
    assert_eq!(ccache("sent_bytes_total"), Some(2000), "{text}");
    assert_eq!(
        sample(
            &text,
            "larder_http_requests_total{protocol=\"ccache\",code=\"201\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "larder_http_requests_total{protocol=\"bazel\",code=\"400\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(sample(&text, "larder_store_entries"), Some(1), "{text}");
    assert!(
        sample(&text, "larder_disk_free_bytes").is_some_and(|f| f > 0),
        "{text}"
    );
    // Every sample line belongs to a family announced with HELP and TYPE (a histogram's
    // samples carry the family name with `_bucket`, `_sum` or `_count`).
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let histogram = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| text.contains(&format!("# TYPE {family} histogram")))
        });
        assert!(
            histogram || text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_in_html_and_json() {
    let s = TestServer::start().await;
    assert_eq!(s.put(&ccache_path(1), vec![1u8; 10]).await, 201);
    let (status, html) = s.get("/status").await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html.to_vec()).expect("utf-8");
    assert!(
        html.contains("<h1>larder serve</h1>") && html.contains("ccache"),
        "{html}"
    );

    let (status, json) = s.get("/status.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON status");
    assert_eq!(v["store"]["entries"], 1, "{v}");
    let ccache = v["protocols"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == "ccache"))
        .expect("ccache figures");
    assert_eq!(ccache["requests"], 1, "{v}");

    let r = s
        .client
        .get(s.url("/status"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET /status");
    let body = r.bytes().await.expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON on Accept");
    assert_eq!(v["store"]["entries"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_keeps_the_size_budget_while_serving() {
    let mut budget = TrimOptions::default();
    budget.max_bytes = Some(64 * 1024);
    let s = TestServer::start_with(|c| {
        c.with_budget(budget)
            .with_cleanup_interval(Duration::from_millis(100))
    })
    .await;
    // 40 values of 8 KiB (distinct contents, so no sharing): 320 KiB in all.
    for i in 0..40 {
        let value: Vec<u8> = (0..8192).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        assert_eq!(s.put(&ccache_path(i), value).await, 201);
    }
    // Each value costs a bit over 8 KiB, so the budget holds at most 7 of them. (Store bytes
    // still count blobs released within the last minute, which the store keeps for concurrent
    // writers: entries are what the budget visibly bounds in a test this short.)
    let mut last = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
        if sample(&last, "larder_store_entries").is_some_and(|n| n <= 7) {
            break;
        }
    }
    let entries = sample(&last, "larder_store_entries").expect("store entries");
    assert!((1..=7).contains(&entries), "{entries} entries left: {last}");
    assert!(
        sample(&last, "larder_evicted_entries_total").is_some_and(|n| n >= 33),
        "{last}"
    );
    // The most recent value survived.
    assert_eq!(s.get(&ccache_path(39)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_disk_cannot_take_is_507_and_reads_go_on() {
    let s = TestServer::start().await;
    assert_eq!(s.put(&ccache_path(2), vec![3u8; 100]).await, 201);
    // Declare a blob far larger than any disk (the body is never sent: the answer comes first).
    let huge: u64 = 1 << 60;
    let digest = "0".repeat(64);
    let r = s
        .client
        .put(s.url(&format!("/v1/blobs/{digest}")))
        .header("x-larder-size", huge.to_string())
        .header("content-length", "0")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 507);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("insufficient storage")
    );
    assert_eq!(s.get(&ccache_path(2)).await.0, 200, "reads go on");
    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    assert_eq!(
        sample(&text, "larder_out_of_space_total"),
        Some(1),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn head_room_under_the_minimum_evicts_before_admitting_a_write() {
    // Ask for more free space than the disk has: every write triggers a clean-up, which
    // evicts everything evictable; the write itself still fits, so it is admitted.
    let free = fs4::available_space(std::env::temp_dir()).expect("free space");
    let mut budget = TrimOptions::default();
    budget.min_free_bytes = Some(free.saturating_mul(2));
    let s = TestServer::start_with(|c| {
        c.with_budget(budget)
            .with_cleanup_interval(Duration::from_secs(3600))
    })
    .await;
    for i in 0..5 {
        assert_eq!(s.put(&ccache_path(10 + i), vec![i as u8; 4096]).await, 201);
    }
    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    assert!(
        sample(&text, "larder_evicted_entries_total").is_some_and(|n| n >= 4),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_need_a_credential_and_reads_are_anonymous_unless_turned_off() {
    use larder_server::Access;
    let access = Access::open()
        .with_token("0123456789abcdef0123")
        .with_user("ci", "secret");
    let s = TestServer::start_with(|c| c.with_access(access.clone())).await;
    let path = ccache_path(20);
    let r = s
        .client
        .put(s.url(&path))
        .body(vec![1u8; 10])
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let wrong = s
        .client
        .put(s.url(&path))
        .bearer_auth("not-the-token-at-all")
        .body(vec![1u8; 10])
        .send()
        .await
        .expect("PUT");
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = s
        .client
        .put(s.url(&path))
        .bearer_auth("0123456789abcdef0123")
        .body(vec![1u8; 10])
        .send()
        .await
        .expect("PUT");
    assert_eq!(ok.status().as_u16(), 201);
    let ok = s
        .client
        .put(s.url(&ccache_path(21)))
        .basic_auth("ci", Some("secret"))
        .body(vec![2u8; 10])
        .send()
        .await
        .expect("PUT");
    assert_eq!(ok.status().as_u16(), 201);
    assert_eq!(s.get(&path).await.0, 200, "anonymous read");
    assert_eq!(s.get("/healthz").await.0, 200);

    let mut closed = access;
    closed.anonymous_reads = false;
    let s = TestServer::start_with(|c| c.with_access(closed)).await;
    assert_eq!(s.get(&path).await.0, 401);
    assert_eq!(s.get("/healthz").await.0, 200, "health stays open");
    let r = s
        .client
        .get(s.url(&path))
        .basic_auth("ci", Some("secret"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
}

/// Evicts the most recently used first: the opposite of the default, so a test can tell which
/// one the server used.
#[derive(Debug)]
struct NewestFirst;

impl larder_core::eviction::EvictionPolicy for NewestFirst {
    fn name(&self) -> &str {
        "newest-first"
    }

    fn select_victims(
        &self,
        c: &larder_core::eviction::Candidates,
        goal: larder_core::eviction::EvictionGoal,
        _now_ms: u64,
    ) -> larder_core::Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse((c.last_access_ms[i], c.created_ms[i])));
        let (mut bytes, mut entries, mut out) = (0u64, 0u64, Vec::new());
        for i in order {
            if bytes >= goal.bytes && entries >= goal.entries {
                break;
            }
            bytes += c.size[i];
            entries += 1;
            out.push(i);
        }
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cleanup_evicts_with_the_configured_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");
    let mut budget = TrimOptions::default();
    budget.max_entries = Some(2);
    let s = TestServer::start_in(&root, |c| {
        c.with_budget(budget)
            .with_cleanup_interval(Duration::from_secs(3600))
            .with_eviction(std::sync::Arc::new(NewestFirst))
    })
    .await;
    for i in 0..3 {
        assert_eq!(s.put(&ccache_path(30 + i), vec![i as u8; 100]).await, 201);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The clean-up runs at start and then every interval: restart over the same directory to
    // have one now.
    s.stop().await;
    let mut budget = TrimOptions::default();
    budget.max_entries = Some(2);
    let s = TestServer::start_in(&root, |c| {
        c.with_budget(budget)
            .with_cleanup_interval(Duration::from_secs(3600))
            .with_eviction(std::sync::Arc::new(NewestFirst))
    })
    .await;
    for _ in 0..100 {
        let m = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
        if sample(&m, "larder_store_entries") == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The newest went; LRU would have removed the oldest.
    assert_eq!(s.get(&ccache_path(30)).await.0, 200);
    assert_eq!(s.get(&ccache_path(32)).await.0, 404);
}

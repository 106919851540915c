//! The server shows its traffic: latency histograms per protocol and operation in `/metrics`,
//! and on `/status` (HTML and JSON) p50/p99 per protocol, the last hour's traffic and hit
//! ratio as inline SVG charts, and the store's size against its budget as a bar.

mod common;

use common::{TestServer, pseudo_random, sha256_hex};
use larder_core::TrimOptions;
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest, batch_update_blobs_request,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{ReadRequest, byte_stream_client::ByteStreamClient};
use larder_reapi::tonic::transport::Channel;

/// A ccache-style value path for key number `i`.
fn ccache_path(i: usize) -> String {
    format!("/ccache/{:040x}", i + 1)
}

/// The value of the sample `name` (label set written as in the exposition) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The `le` bounds and cumulative counts of one histogram's `_bucket` series, in order.
fn buckets(text: &str, labels: &str) -> Vec<(String, u64)> {
    let prefix = format!("larder_request_duration_seconds_bucket{{{labels},le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// Requests made through two protocols, by (protocol, op): the counts the histograms must show.
const MADE: [(&str, &str, u64); 5] = [
    ("ccache", "put", 3),
    ("ccache", "get", 5),
    ("ccache", "head", 2),
    ("bazel", "put", 2),
    ("bazel", "get", 4),
];

async fn make_traffic(s: &TestServer) {
    for i in 0..3 {
        let value = pseudo_random(&format!("ccache {i}"), 2000 + i * 1000);
        assert_eq!(s.put(&ccache_path(i), value).await, 201);
    }
    // Three hits and two misses.
    for i in 0..5 {
        let want = if i < 3 { 200 } else { 404 };
        assert_eq!(s.get(&ccache_path(i)).await.0, want);
    }
    assert_eq!(s.head(&ccache_path(0)).await, 200);
    assert_eq!(s.head(&ccache_path(9)).await, 404);
    let mut paths = Vec::new();
    for i in 0..2 {
        let blob = pseudo_random(&format!("bazel {i}"), 5000);
        let path = format!("/bazel/cas/{}", sha256_hex(&blob));
        assert!(matches!(s.put(&path, blob).await, 200 | 201 | 204));
        paths.push(path);
    }
    for path in &paths {
        assert_eq!(s.get(path).await.0, 200);
    }
    let absent = format!("/bazel/cas/{}", sha256_hex(b"never stored"));
    assert_eq!(s.get(&absent).await.0, 404);
    assert_eq!(s.get(&absent).await.0, 404);
}

async fn start() -> TestServer {
    let mut budget = TrimOptions::default();
    budget.max_bytes = Some(1 << 20);
    budget.max_entries = Some(100);
    TestServer::start_with(|c| c.with_budget(budget)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_has_latency_histograms_that_count_every_request() {
    let s = start().await;
    make_traffic(&s).await;
    let (status, body) = s.get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).expect("utf-8 metrics");
    assert!(
        text.contains("# TYPE larder_request_duration_seconds histogram"),
        "{text}"
    );
    for (protocol, op, made) in MADE {
        let labels = format!("protocol=\"{protocol}\",op=\"{op}\"");
        let series = buckets(&text, &labels);
        assert!(series.len() > 10, "{labels}: {series:?}\n{text}");
        assert_eq!(
            series.last().map(|(le, _)| le.as_str()),
            Some("+Inf"),
            "{labels}"
        );
        // Cumulative: never decreasing, bounds increasing, ending at the request count.
        for pair in series.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{labels}: {series:?}");
            if pair[1].0 != "+Inf" {
                let lo: f64 = pair[0].0.parse().expect("le");
                let hi: f64 = pair[1].0.parse().expect("le");
                assert!(lo < hi, "{labels}: {series:?}");
            }
        }
        assert_eq!(series.last().map(|b| b.1), Some(made), "{labels}\n{text}");
        let count = sample(
            &text,
            &format!("larder_request_duration_seconds_count{{{labels}}}"),
        );
        assert_eq!(count, Some(made as f64), "{labels}\n{text}");
        let sum = sample(
            &text,
            &format!("larder_request_duration_seconds_sum{{{labels}}}"),
        )
        .expect("a _sum sample");
        assert!(sum > 0.0, "{labels}: sum {sum}");
    }
    // No traffic, no series: nothing was sent through WebDAV or waf.
    assert!(!text.contains("protocol=\"dav\",op="), "{text}");
    assert!(!text.contains("protocol=\"waf\",op="), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_charts_quantiles_and_the_budget() {
    let s = start().await;
    make_traffic(&s).await;

    let (status, json) = s.get("/status.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON status");
    let protocol = |name: &str| {
        v["protocols"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["protocol"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} figures in {v}"))
    };
    for name in ["ccache", "bazel"] {
        let p = protocol(name);
        let p50 = p["p50_seconds"].as_f64().expect("p50 as a number");
        let p99 = p["p99_seconds"].as_f64().expect("p99 as a number");
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= 60.0,
            "{name}: {p50} {p99}"
        );
        let ops = p["latency"].as_array().expect("latency per op");
        for (protocol, op, made) in MADE.iter().filter(|m| m.0 == name) {
            let l = ops
                .iter()
                .find(|l| l["op"] == *op)
                .unwrap_or_else(|| panic!("{protocol} {op} in {p}"));
            assert_eq!(l["count"].as_u64(), Some(*made), "{l}");
            assert!(l["p50_seconds"].as_f64().is_some_and(|x| x > 0.0), "{l}");
            assert!(l["p99_seconds"].as_f64().is_some_and(|x| x > 0.0), "{l}");
        }
        // The last hour: 60 minutes, everything so far in the last ones.
        let requests = p["last_hour"]["requests"].as_array().expect("per minute");
        assert_eq!(requests.len(), 60, "{p}");
        let total: u64 = requests.iter().filter_map(|r| r.as_u64()).sum();
        let made: u64 = MADE.iter().filter(|m| m.0 == name).map(|m| m.2).sum();
        assert_eq!(total, made, "{p}");
        assert_eq!(p["last_hour"]["hits"].as_array().map(Vec::len), Some(60));
    }
    let ccache = protocol("ccache");
    let hits: u64 = ccache["last_hour"]["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x.as_u64()).sum())
        .unwrap_or_default();
    let misses: u64 = ccache["last_hour"]["misses"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x.as_u64()).sum())
        .unwrap_or_default();
    assert_eq!((hits, misses), (4, 3), "{ccache}");
    assert_eq!(v["store"]["max_bytes"].as_u64(), Some(1 << 20), "{v}");

    let (status, html) = s.get("/status").await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html.to_vec()).expect("utf-8");
    // Per protocol with traffic: requests, hit ratio and bytes charts; plus two budget bars.
    let charts = html.matches("<svg class=chart").count();
    assert!(charts >= 2 * 3 + 2, "{charts} charts in {html}");
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.contains("hit ratio per minute, last hour"), "{html}");
    assert!(html.contains("requests per minute, last hour"), "{html}");
    assert!(html.contains("<rect class=used"), "{html}");
    assert!(html.contains("of 100 entries"), "{html}");
    assert!(html.contains("<th>p50</th><th>p99</th>"), "{html}");
    // A figure in each p50/p99 cell of the protocols with traffic.
    let cells: Vec<&str> = html
        .split("<td class=p50>")
        .skip(1)
        .chain(html.split("<td class=p99>").skip(1))
        .filter_map(|rest| rest.split("</td>").next())
        .collect();
    assert!(cells.len() >= 4, "{html}");
    for cell in cells {
        let figure = cell
            .strip_suffix(" µs")
            .or_else(|| cell.strip_suffix(" ms"))
            .or_else(|| cell.strip_suffix(" s"));
        assert!(
            figure.is_some_and(|f| f.parse::<f64>().is_ok()),
            "not a latency: {cell:?}"
        );
    }
    // No script and nothing fetched from elsewhere.
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("src="), "{html}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_have_their_own_histograms() {
    let s = start().await;
    let channel = Channel::from_shared(s.url(""))
        .expect("uri")
        .connect()
        .await
        .expect("h2c connection");
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel);
    let blob = pseudo_random("grpc blob", 3000);
    let d = Digest {
        hash: sha256_hex(&blob),
        size_bytes: blob.len() as i64,
    };
    cas.batch_update_blobs(BatchUpdateBlobsRequest {
        requests: vec![batch_update_blobs_request::Request {
            digest: Some(d.clone()),
            data: blob.clone(),
            compressor: 0,
        }],
        ..Default::default()
    })
    .await
    .expect("batch update");
    for _ in 0..2 {
        let missing = cas
            .find_missing_blobs(FindMissingBlobsRequest {
                blob_digests: vec![d.clone()],
                ..Default::default()
            })
            .await
            .expect("find missing")
            .into_inner()
            .missing_blob_digests;
        assert!(missing.is_empty());
    }
    let mut stream = bs
        .read(ReadRequest {
            resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .expect("read")
        .into_inner();
    let mut read = Vec::new();
    while let Some(m) = stream.message().await.expect("chunk") {
        read.extend_from_slice(&m.data);
    }
    assert!(read == blob);

    let text = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    for (op, made) in [("put", 1), ("head", 2), ("get", 1)] {
        let labels = format!("protocol=\"grpc\",op=\"{op}\"");
        let series = buckets(&text, &labels);
        assert_eq!(series.last().map(|b| b.1), Some(made), "{labels}\n{text}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&s.get("/status.json").await.1).expect("JSON status");
    let grpc = v["protocols"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == "grpc"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(grpc["requests"].as_u64(), Some(4), "{v}");
    assert!(
        grpc["p50_seconds"].as_f64().is_some_and(|x| x > 0.0),
        "{grpc}"
    );
    s.stop().await;
}

/// Debian's chromium, if installed.
fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// A real browser loads `/status` after traffic: the page it parsed (its DOM) holds every chart
/// and bar the server sent, none of them moved or dropped by the HTML parser.
#[tokio::test(flavor = "multi_thread")]
async fn status_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium not found (cargo xtask test installs it)"
        );
        eprintln!("skipped: chromium not found on PATH (apt-get install chromium)");
        return;
    };
    let s = start().await;
    make_traffic(&s).await;
    // The first page load is itself traffic (protocol `other`); the second shows its charts
    // too, as the browser's load will.
    assert_eq!(s.get("/status").await.0, 200);
    let sent = String::from_utf8(s.get("/status").await.1.to_vec()).expect("utf-8");
    let profile = tempfile::tempdir().expect("profile dir");
    let url = s.url("/status");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--dump-dom", &url])
            .output()
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("chromium finished within 2 minutes")
        .expect("join")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("<h1>larder serve</h1>"),
        "chromium: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    let charts = dom.matches("<svg class=\"chart\"").count();
    assert!(charts >= 2 * 3 + 2, "{charts} charts in the DOM:\n{dom}");
    assert_eq!(charts, sent.matches("<svg class=chart").count(), "{dom}");
    // Bars only ever join within the hour (a minute may have turned since `sent`).
    assert!(
        dom.matches("<rect").count() >= sent.matches("<rect").count(),
        "{dom}"
    );
    // Every bar inside its chart: nothing outside an <svg> is a <rect>.
    for piece in dom.split("</svg>") {
        let outside = piece.split("<svg").next().unwrap_or_default();
        assert!(!outside.contains("<rect"), "a bar outside its chart: {dom}");
    }
    assert!(dom.contains("hit ratio per minute, last hour"), "{dom}");
    assert!(dom.contains("<th>p50</th><th>p99</th>"), "{dom}");
    s.stop().await;
}

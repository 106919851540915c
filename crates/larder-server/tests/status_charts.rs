//! The server shows its traffic: latency histograms per protocol and operation in `/metrics`,
//! and on `/status` (HTML and JSON) p50/p99 per protocol, the last hour's traffic and hit
//! ratio as inline SVG charts, and the store's size against its budget as a bar. gRPC calls
//! are also shown per method: calls by status, latency, message bytes, calls in flight.

mod common;

use common::{TestServer, pseudo_random, sha256_hex};
use larder_core::TrimOptions;
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest, GetActionResultRequest,
    GetCapabilitiesRequest, action_cache_client::ActionCacheClient, batch_update_blobs_request,
    capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{
    ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use larder_reapi::tonic::Code;
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
    let read = common::bytestream_read(&mut bs, &d).await;
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

const BYTESTREAM: &str = "google.bytestream.ByteStream";
const CAS: &str = "build.bazel.remote.execution.v2.ContentAddressableStorage";

/// The labels of a gRPC method's series.
fn method(service: &str, method: &str) -> String {
    format!("service=\"{service}\",method=\"{method}\"")
}

/// The value of `larder_NAME{LABELS}`, 0 when the series is absent.
fn value(text: &str, name: &str, labels: &str) -> u64 {
    sample(text, &format!("larder_{name}{{{labels}}}")).map_or(0, |v| v as u64)
}

async fn metrics_text(s: &TestServer) -> String {
    String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8 metrics")
}

fn read_request(d: &Digest) -> ReadRequest {
    ReadRequest {
        resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
        read_offset: 0,
        read_limit: 0,
    }
}

/// Each gRPC method is counted on its own: calls by gRPC status (errors too, and a method the
/// server does not know as `other`), a latency histogram in the HTTP histograms' buckets,
/// message bytes and messages each way, lookups as the protocol's hits and misses; and
/// `/status` shows them in its gRPC section (JSON and HTML).
#[tokio::test(flavor = "multi_thread")]
async fn grpc_methods_are_counted_with_status_bytes_and_latency() {
    let s = start().await;
    let channel = Channel::from_shared(s.url(""))
        .expect("uri")
        .connect()
        .await
        .expect("h2c connection");
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel.clone());
    let mut caps = CapabilitiesClient::new(channel);
    let digest = |b: &[u8]| Digest {
        hash: sha256_hex(b),
        size_bytes: b.len() as i64,
    };

    let small = pseudo_random("grpc small", 3000);
    let d = digest(&small);
    cas.batch_update_blobs(BatchUpdateBlobsRequest {
        requests: vec![batch_update_blobs_request::Request {
            digest: Some(d.clone()),
            data: small.clone(),
            compressor: 0,
        }],
        ..Default::default()
    })
    .await
    .expect("batch update");
    // A Write of 100,000 bytes in two messages.
    let large = pseudo_random("grpc write", 100_000);
    let w = digest(&large);
    let name = format!("uploads/0001/blobs/{}/{}", w.hash, w.size_bytes);
    let requests: Vec<WriteRequest> = large
        .chunks(64 << 10)
        .enumerate()
        .map(|(i, c)| WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: (i * (64 << 10)) as i64,
            finish_write: (i + 1) * (64 << 10) >= large.len(),
            data: c.to_vec(),
        })
        .collect();
    assert_eq!(requests.len(), 2);
    let committed = bs
        .write(futures::stream::iter(requests))
        .await
        .expect("write")
        .into_inner()
        .committed_size;
    assert_eq!(committed, large.len() as i64);
    // Two FindMissingBlobs answered, one refused (a malformed digest).
    for _ in 0..2 {
        cas.find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![d.clone(), w.clone()],
            ..Default::default()
        })
        .await
        .expect("find missing");
    }
    let err = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![Digest {
                hash: "not hex".into(),
                size_bytes: 1,
            }],
            ..Default::default()
        })
        .await
        .expect_err("a malformed digest");
    assert_eq!(err.code(), Code::InvalidArgument);
    // A hit and a miss through ByteStream, a miss through the action cache.
    let mut stream = bs.read(read_request(&d)).await.expect("read").into_inner();
    let mut read = Vec::new();
    while let Some(m) = stream.message().await.expect("chunk") {
        read.extend_from_slice(&m.data);
    }
    assert!(read == small);
    let absent = digest(b"never stored");
    let err = match bs.read(read_request(&absent)).await {
        Ok(r) => r.into_inner().message().await.expect_err("not found"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::NotFound);
    let err = ac
        .get_action_result(GetActionResultRequest {
            action_digest: Some(absent.clone()),
            ..Default::default()
        })
        .await
        .expect_err("no action result");
    assert_eq!(err.code(), Code::NotFound);
    caps.get_capabilities(GetCapabilitiesRequest::default())
        .await
        .expect("capabilities");
    // A method the server does not have, on a service it has: UNIMPLEMENTED, counted as other.
    let raw = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let resp = raw
        .post(s.url(&format!("/{BYTESTREAM}/NoSuchMethod")))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("raw gRPC call");
    assert_eq!(
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()),
        Some("12")
    );

    let text = metrics_text(&s).await;
    let calls = |labels: &str, code: &str| {
        value(
            &text,
            "grpc_calls_total",
            &format!("{labels},code=\"{code}\""),
        )
    };
    let read_m = method(BYTESTREAM, "Read");
    let write_m = method(BYTESTREAM, "Write");
    let find_m = method(CAS, "FindMissingBlobs");
    assert_eq!(calls(&read_m, "OK"), 1, "{text}");
    assert_eq!(calls(&read_m, "NOT_FOUND"), 1, "{text}");
    assert_eq!(calls(&write_m, "OK"), 1, "{text}");
    assert_eq!(calls(&find_m, "OK"), 2, "{text}");
    assert_eq!(calls(&find_m, "INVALID_ARGUMENT"), 1, "{text}");
    assert_eq!(calls(&method(CAS, "BatchUpdateBlobs"), "OK"), 1, "{text}");
    assert_eq!(
        calls(
            &method(
                "build.bazel.remote.execution.v2.ActionCache",
                "GetActionResult"
            ),
            "NOT_FOUND"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        calls(
            &method(
                "build.bazel.remote.execution.v2.Capabilities",
                "GetCapabilities"
            ),
            "OK"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        calls(&method("other", "other"), "UNIMPLEMENTED"),
        1,
        "{text}"
    );
    // Every series of a method names a method of the table or `other`, never the raw path.
    assert!(!text.contains("NoSuchMethod"), "{text}");

    // One histogram per method, in the HTTP histograms' buckets, counting each call.
    let http_bounds: Vec<String> = buckets(&text, "protocol=\"grpc\",op=\"get\"")
        .into_iter()
        .map(|(le, _)| le)
        .collect();
    for (labels, made) in [(&read_m, 2), (&find_m, 3), (&write_m, 1)] {
        let prefix = format!("larder_grpc_call_duration_seconds_bucket{{{labels},le=\"");
        let series: Vec<(String, u64)> = text
            .lines()
            .filter_map(|l| {
                let (le, n) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                Some((le.to_owned(), n.parse().ok()?))
            })
            .collect();
        let bounds: Vec<String> = series.iter().map(|(le, _)| le.clone()).collect();
        assert_eq!(bounds, http_bounds, "{labels}\n{text}");
        assert!(series.windows(2).all(|p| p[0].1 <= p[1].1), "{series:?}");
        assert_eq!(series.last().map(|b| b.1), Some(made), "{labels}");
        assert_eq!(
            value(&text, "grpc_call_duration_seconds_count", labels),
            made
        );
        let sum = sample(
            &text,
            &format!("larder_grpc_call_duration_seconds_sum{{{labels}}}"),
        )
        .expect("a _sum sample");
        assert!(sum > 0.0, "{labels}: {sum}");
    }

    // Message bytes: the Write's two messages carry the blob and a little protobuf around it;
    // the Read's answer carries the small blob.
    let write_in = value(&text, "grpc_received_bytes_total", &write_m);
    assert!(
        (100_000..100_000 + 300).contains(&write_in),
        "{write_in}\n{text}"
    );
    assert_eq!(value(&text, "grpc_received_messages_total", &write_m), 2);
    assert_eq!(value(&text, "grpc_sent_messages_total", &write_m), 1);
    let read_out = value(&text, "grpc_sent_bytes_total", &read_m);
    assert!((3000..3100).contains(&read_out), "{read_out}\n{text}");
    assert_eq!(value(&text, "grpc_calls_in_flight", &read_m), 0);
    // The protocol's totals add up the methods', and lookups are its hits and misses.
    let per_method_in: u64 = text
        .lines()
        .filter(|l| l.starts_with("larder_grpc_received_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        value(&text, "received_bytes_total", "protocol=\"grpc\""),
        per_method_in
    );
    assert!(value(&text, "sent_bytes_total", "protocol=\"grpc\"") >= read_out);
    assert_eq!(value(&text, "hits_total", "protocol=\"grpc\""), 1, "{text}");
    assert_eq!(
        value(&text, "misses_total", "protocol=\"grpc\""),
        2,
        "{text}"
    );

    let v: serde_json::Value =
        serde_json::from_slice(&s.get("/status.json").await.1).expect("JSON status");
    let methods = v["grpc"]["methods"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| {
        methods
            .iter()
            .find(|m| m["method"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    let r = find("Read");
    assert_eq!(r["service"], BYTESTREAM);
    assert_eq!(
        (r["calls"].as_u64(), r["errors"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );
    assert_eq!(r["codes"]["OK"].as_u64(), Some(1), "{r}");
    assert_eq!(r["codes"]["NOT_FOUND"].as_u64(), Some(1), "{r}");
    assert_eq!(r["bytes_out"].as_u64(), Some(read_out), "{r}");
    let f = find("FindMissingBlobs");
    assert_eq!(
        (f["calls"].as_u64(), f["errors"].as_u64()),
        (Some(3), Some(1)),
        "{f}"
    );
    for m in &methods {
        let p50 = m["p50_seconds"].as_f64().expect("p50");
        let p99 = m["p99_seconds"].as_f64().expect("p99");
        assert!(0.0 < p50 && p50 <= p99, "{m}");
    }
    assert_eq!(v["grpc"]["calls_in_flight"].as_u64(), Some(0), "{v}");

    let html = String::from_utf8(s.get("/status").await.1.to_vec()).expect("utf-8");
    let section = html
        .split("<table id=grpc>")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("a gRPC table in {html}"));
    let row = section
        .split("<tr>")
        .find(|r| r.contains("<td>FindMissingBlobs</td>"))
        .unwrap_or_else(|| panic!("a FindMissingBlobs row in {section}"));
    assert!(
        row.contains("<td>3</td><td>0</td><td>1</td>"),
        "calls, in flight, errors: {row}"
    );
    assert!(row.contains("INVALID_ARGUMENT: 1"), "{row}");
    for class in ["grpc-p50", "grpc-p99"] {
        let cell = row
            .split(&format!("<td class={class}>"))
            .nth(1)
            .and_then(|c| c.split("</td>").next())
            .unwrap_or_default();
        assert!(
            [" µs", " ms", " s"].iter().any(|u| cell
                .strip_suffix(u)
                .is_some_and(|f| f.parse::<f64>().is_ok())),
            "not a latency: {cell:?}"
        );
    }
    s.stop().await;
}

/// A call in flight shows as such; a call whose client goes away before the end counts as
/// CANCELLED, and leaves the in-flight gauge.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_in_flight_and_cancelled() {
    // No size budget: the blob is 8 MiB.
    let s = TestServer::start().await;
    let blob = pseudo_random("grpc in flight", 8 << 20);
    assert_eq!(
        s.put(&format!("/bazel/cas/{}", sha256_hex(&blob)), blob.clone())
            .await,
        200
    );
    let channel = Channel::from_shared(s.url(""))
        .expect("uri")
        .connect()
        .await
        .expect("h2c connection");
    let mut bs = ByteStreamClient::new(channel);
    let d = Digest {
        hash: sha256_hex(&blob),
        size_bytes: blob.len() as i64,
    };
    // One message read of eight: the server waits on flow control for the rest.
    let mut stream = bs.read(read_request(&d)).await.expect("read").into_inner();
    let first = stream
        .message()
        .await
        .expect("chunk")
        .expect("a first chunk");
    assert!(!first.data.is_empty());
    let read_m = method(BYTESTREAM, "Read");
    let text = metrics_text(&s).await;
    assert_eq!(value(&text, "grpc_calls_in_flight", &read_m), 1, "{text}");
    let v: serde_json::Value =
        serde_json::from_slice(&s.get("/status.json").await.1).expect("JSON status");
    assert_eq!(v["grpc"]["calls_in_flight"].as_u64(), Some(1), "{v}");
    drop(stream);
    // The client's reset reaches the server, which drops the response: wait for it.
    let mut text = metrics_text(&s).await;
    for _ in 0..100 {
        if value(
            &text,
            "grpc_calls_total",
            &format!("{read_m},code=\"CANCELLED\""),
        ) == 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = metrics_text(&s).await;
    }
    assert_eq!(
        value(
            &text,
            "grpc_calls_total",
            &format!("{read_m},code=\"CANCELLED\"")
        ),
        1,
        "{text}"
    );
    assert_eq!(value(&text, "grpc_calls_in_flight", &read_m), 0, "{text}");
    // What was sent before the end counts.
    assert!(
        value(&text, "grpc_sent_bytes_total", &read_m) >= first.data.len() as u64,
        "{text}"
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

//! Per-RPC figures of the gRPC services (REAPI v2, ByteStream, Remote Asset, health).
//!
//! The middleware on the gRPC routes ([`track_grpc`]) knows each call by its path
//! (`/{service}/{method}`), one of a fixed table of methods the server serves; any other path
//! counts as `other`, so the labels in `/metrics` stay bounded. Per method it counts:
//! - calls, by the gRPC status they ended with: from the response headers when the call was
//!   answered with trailers only (an error before any message), else from the trailers; a call
//!   whose response stops before its trailers (the client cancelled, or the connection was cut)
//!   counts as `CANCELLED`;
//! - latency, from the call's arrival to its end (its trailers, the whole stream for
//!   `ByteStream.Read` and `Write`), in the buckets of the HTTP histograms;
//! - bytes and messages each way: the gRPC messages' bytes as they travel (the 5-byte framing
//!   of each message left out; a message sent with gRPC compression counts as compressed);
//! - calls in flight.
//!
//! The same bytes count under `protocol="grpc"` in the per-protocol totals and the status
//! page's last hour, and lookups (`ByteStream.Read`, `ActionCache.GetActionResult`, Remote
//! Asset `FetchBlob` and `FetchDirectory`) answered `OK` or `NOT_FOUND` as its hits and misses.
//! Counting a message costs a few comparisons per body frame and one relaxed atomic add per
//! counter when the body is done; nothing allocates but the two body wrappers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Serialize;

use super::{BOUNDS_NS, GRPC, Histogram, Metrics, STATUSES, quantile};
use crate::app::AppState;

/// The methods counted one by one: (service, method, whether it is a lookup whose `NOT_FOUND`
/// is a cache miss). The last row takes every other path.
const METHODS: [(&str, &str, bool); 19] = [
    (
        "build.bazel.remote.execution.v2.Capabilities",
        "GetCapabilities",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "FindMissingBlobs",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "BatchUpdateBlobs",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "BatchReadBlobs",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "GetTree",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "SplitBlob",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
        "SpliceBlob",
        false,
    ),
    (
        "build.bazel.remote.execution.v2.ActionCache",
        "GetActionResult",
        true,
    ),
    (
        "build.bazel.remote.execution.v2.ActionCache",
        "UpdateActionResult",
        false,
    ),
    ("google.bytestream.ByteStream", "Read", true),
    ("google.bytestream.ByteStream", "Write", false),
    ("google.bytestream.ByteStream", "QueryWriteStatus", false),
    ("build.bazel.remote.asset.v1.Fetch", "FetchBlob", true),
    ("build.bazel.remote.asset.v1.Fetch", "FetchDirectory", true),
    ("build.bazel.remote.asset.v1.Push", "PushBlob", false),
    ("build.bazel.remote.asset.v1.Push", "PushDirectory", false),
    ("grpc.health.v1.Health", "Check", false),
    ("grpc.health.v1.Health", "Watch", false),
    ("other", "other", false),
];
const OTHER_METHOD: usize = METHODS.len() - 1;

/// The gRPC status codes, by their number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const OK: usize = 0;
const CANCELLED: usize = 1;
const UNKNOWN: usize = 2;
const NOT_FOUND: usize = 5;

/// The method a call's path names, as an index of [`METHODS`].
fn method_of(path: &str) -> usize {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return OTHER_METHOD;
    };
    METHODS[..OTHER_METHOD]
        .iter()
        .position(|(s, m, _)| *s == service && *m == method)
        .unwrap_or(OTHER_METHOD)
}

/// The gRPC status a `grpc-status` value names (an unknown number is `UNKNOWN`).
fn code_of(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|c| *c < CODES.len())
        .unwrap_or(UNKNOWN)
}

/// The status of a response answered with trailers only: its `grpc-status` header, or for an
/// HTTP error without one, the code gRPC clients give it (the gRPC HTTP/2 spec's table).
fn code_in_head(response: &Response) -> Option<usize> {
    if let Some(v) = response.headers().get("grpc-status") {
        return Some(code_of(v.as_bytes()));
    }
    match response.status() {
        StatusCode::OK => None,
        StatusCode::BAD_REQUEST => Some(13),
        StatusCode::UNAUTHORIZED => Some(16),
        StatusCode::FORBIDDEN => Some(7),
        StatusCode::NOT_FOUND => Some(12),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Some(14),
        _ => Some(UNKNOWN),
    }
}

/// One method's counters.
#[derive(Debug, Default)]
struct MethodCounters {
    by_code: [AtomicU64; CODES.len()],
    in_flight: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    latency: Histogram,
}

/// Every method's counters, in the order of [`METHODS`].
#[derive(Debug, Default)]
pub(super) struct GrpcCounters {
    methods: [MethodCounters; METHODS.len()],
}

/// Counts the gRPC messages in a body's bytes: each is a 5-byte prefix (a compression flag and
/// a big-endian length) and that many bytes, and frames split them anywhere.
#[derive(Debug, Default)]
struct Framing {
    /// The prefix bytes seen of the next message.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    messages: u64,
    bytes: u64,
}

impl Framing {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.bytes += n as u64;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                let [_, a, b, c, d] = self.prefix;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.messages += 1;
                self.prefix_len = 0;
            }
        }
    }
}

/// Middleware on the gRPC routes: count each call under its method (see the module docs),
/// and under `protocol="grpc"` by HTTP status, with its latency to the response head by
/// operation (reads as `get`, `FindMissingBlobs` as `head`, writes as `put`, anything else as
/// `other`), as the HTTP protocols are counted.
pub(crate) async fn track_grpc(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = Instant::now();
    let path = request.uri().path();
    let op = grpc_op(path);
    let method = method_of(path);
    let metrics = Arc::clone(&state.metrics);
    let mut call = Call::begin(Arc::clone(&metrics), method, arrived);
    let request = request.map(|body| {
        Body::new(RequestBody {
            body,
            framing: Framing::default(),
            metrics: Arc::clone(&metrics),
            method,
        })
    });
    let response = next.run(request).await;
    let answered = Instant::now();
    let p = &metrics.protocols[GRPC];
    let slot = STATUSES
        .iter()
        .position(|s| *s == response.status().as_u16())
        .unwrap_or(STATUSES.len() - 1);
    p.by_status[slot].fetch_add(1, Ordering::Relaxed);
    p.minute_slot(metrics.minute_at(answered))
        .requests
        .fetch_add(1, Ordering::Relaxed);
    let ns =
        u64::try_from(answered.saturating_duration_since(arrived).as_nanos()).unwrap_or(u64::MAX);
    p.latency[op].observe(ns);
    call.code = code_in_head(&response);
    response.map(|body| Body::new(ResponseBody { body, call }))
}

/// The operation of a gRPC call, by its method (the last part of the path).
fn grpc_op(path: &str) -> usize {
    match path.rsplit('/').next().unwrap_or_default() {
        "Read" | "BatchReadBlobs" | "GetActionResult" | "GetTree" => 0,
        "FindMissingBlobs" => 1,
        "Write" | "BatchUpdateBlobs" | "UpdateActionResult" => 2,
        _ => 4,
    }
}

/// One call, from its arrival until it is counted: when its response ends, or when it is
/// dropped unfinished (the client went away, or the connection was cut).
struct Call {
    metrics: Arc<Metrics>,
    method: usize,
    arrived: Instant,
    /// The status, once known from the response head.
    code: Option<usize>,
    /// The response's messages.
    framing: Framing,
    counted: bool,
}

impl Call {
    fn begin(metrics: Arc<Metrics>, method: usize, arrived: Instant) -> Call {
        metrics.grpc.methods[method]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Call {
            metrics,
            method,
            arrived,
            code: None,
            framing: Framing::default(),
            counted: false,
        }
    }

    /// Count the call as ended with `code`, once.
    fn end(&mut self, code: usize) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let now = Instant::now();
        let m = &self.metrics;
        let c = &m.grpc.methods[self.method];
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.by_code[code].fetch_add(1, Ordering::Relaxed);
        c.bytes_out.fetch_add(self.framing.bytes, Ordering::Relaxed);
        c.messages_out
            .fetch_add(self.framing.messages, Ordering::Relaxed);
        let ns = u64::try_from(now.saturating_duration_since(self.arrived).as_nanos())
            .unwrap_or(u64::MAX);
        c.latency.observe(ns);
        let p = &m.protocols[GRPC];
        let slot = p.minute_slot(m.minute_at(now));
        p.bytes_out.fetch_add(self.framing.bytes, Ordering::Relaxed);
        slot.bytes_out
            .fetch_add(self.framing.bytes, Ordering::Relaxed);
        if METHODS[self.method].2 {
            let (total, minute) = match code {
                OK => (&p.hits, &slot.hits),
                NOT_FOUND => (&p.misses, &slot.misses),
                _ => return,
            };
            total.fetch_add(1, Ordering::Relaxed);
            minute.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(CANCELLED);
        self.end(code);
    }
}

/// A call's response body: counts its messages, and the call when its trailers go out.
struct ResponseBody {
    body: Body,
    call: Call,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.call.framing.feed(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(UNKNOWN, |v| code_of(v.as_bytes()));
                    this.call.end(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.end(UNKNOWN),
            Poll::Ready(None) => {
                let code = this.call.code.unwrap_or(UNKNOWN);
                this.call.end(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A call's request body: counts its messages, added to the totals when it is dropped.
struct RequestBody {
    body: Body,
    framing: Framing,
    metrics: Arc<Metrics>,
    method: usize,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.framing.feed(data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let m = &self.metrics;
        let c = &m.grpc.methods[self.method];
        let f = &self.framing;
        c.bytes_in.fetch_add(f.bytes, Ordering::Relaxed);
        c.messages_in.fetch_add(f.messages, Ordering::Relaxed);
        let p = &m.protocols[GRPC];
        p.bytes_in.fetch_add(f.bytes, Ordering::Relaxed);
        p.minute_slot(m.minute_at(Instant::now()))
            .bytes_in
            .fetch_add(f.bytes, Ordering::Relaxed);
    }
}

/// What the pages show of the gRPC calls.
#[derive(Debug, Serialize)]
pub(super) struct GrpcFigures {
    /// Calls not yet ended.
    pub(super) calls_in_flight: u64,
    /// The methods called so far.
    pub(super) methods: Vec<MethodFigures>,
}

/// One method's figures.
#[derive(Debug, Serialize)]
pub(super) struct MethodFigures {
    pub(super) service: &'static str,
    pub(super) method: &'static str,
    /// Calls ended.
    pub(super) calls: u64,
    pub(super) in_flight: u64,
    /// Calls that ended with a status other than `OK` and `NOT_FOUND` (a lookup's miss).
    pub(super) errors: u64,
    /// Calls by the status they ended with, for every status seen.
    #[serde(serialize_with = "as_map")]
    pub(super) codes: Vec<(&'static str, u64)>,
    /// Message bytes received and sent (the 5-byte framing of each message left out).
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) messages_in: u64,
    pub(super) messages_out: u64,
    /// Latency from arrival to the end of the call, in seconds (`null` before a call ended).
    pub(super) sum_seconds: f64,
    pub(super) p50_seconds: Option<f64>,
    pub(super) p99_seconds: Option<f64>,
    /// Counts per bucket of [`BOUNDS_NS`], not cumulative, the last one `+Inf`.
    #[serde(skip)]
    pub(super) buckets: [u64; BOUNDS_NS.len() + 1],
}

fn as_map<S: serde::Serializer>(codes: &[(&'static str, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(codes.iter().map(|(k, v)| (k, v)))
}

impl GrpcCounters {
    /// The figures of every method called or in a call now.
    pub(super) fn figures(&self) -> GrpcFigures {
        let methods: Vec<MethodFigures> = METHODS
            .iter()
            .zip(&self.methods)
            .filter_map(|((service, method, _), c)| {
                let codes: Vec<(&'static str, u64)> = CODES
                    .iter()
                    .zip(&c.by_code)
                    .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                let in_flight = c.in_flight.load(Ordering::Relaxed);
                if codes.is_empty() && in_flight == 0 {
                    return None;
                }
                let (buckets, sum_ns) = c.latency.load();
                Some(MethodFigures {
                    service,
                    method,
                    calls: codes.iter().map(|(_, n)| n).sum(),
                    in_flight,
                    errors: codes
                        .iter()
                        .filter(|(name, _)| *name != CODES[OK] && *name != CODES[NOT_FOUND])
                        .map(|(_, n)| n)
                        .sum(),
                    codes,
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                    messages_in: c.messages_in.load(Ordering::Relaxed),
                    messages_out: c.messages_out.load(Ordering::Relaxed),
                    sum_seconds: sum_ns as f64 / 1e9,
                    p50_seconds: quantile(&buckets, 0.5),
                    p99_seconds: quantile(&buckets, 0.99),
                    buckets,
                })
            })
            .collect();
        GrpcFigures {
            calls_in_flight: methods.iter().map(|m| m.in_flight).sum(),
            methods,
        }
    }
}

/// The `/metrics` lines of the gRPC calls.
pub(super) fn prometheus(out: &mut String, g: &GrpcFigures) {
    use std::fmt::Write as _;
    let labels = |m: &MethodFigures| format!("service=\"{}\",method=\"{}\"", m.service, m.method);
    let _ = writeln!(
        out,
        "# HELP larder_grpc_calls_total gRPC calls ended, by service, method and gRPC status (CANCELLED: the response stopped before its status).\n# TYPE larder_grpc_calls_total counter"
    );
    for m in &g.methods {
        for (code, n) in &m.codes {
            let _ = writeln!(
                out,
                "larder_grpc_calls_total{{{},code=\"{code}\"}} {n}",
                labels(m)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP larder_grpc_call_duration_seconds Time from a gRPC call's arrival to its end (its status sent), by service and method.\n# TYPE larder_grpc_call_duration_seconds histogram"
    );
    for m in g.methods.iter().filter(|m| m.calls > 0) {
        super::write_histogram(
            out,
            "larder_grpc_call_duration_seconds",
            &labels(m),
            &m.buckets,
            m.sum_seconds,
            m.calls,
        );
    }
    for (name, kind, help, get) in [
        (
            "grpc_received_bytes_total",
            "counter",
            "gRPC request message bytes (without the 5-byte framing of each message), by service and method.",
            (|m: &MethodFigures| m.bytes_in) as fn(&MethodFigures) -> u64,
        ),
        (
            "grpc_sent_bytes_total",
            "counter",
            "gRPC response message bytes (without the 5-byte framing of each message), by service and method.",
            |m| m.bytes_out,
        ),
        (
            "grpc_received_messages_total",
            "counter",
            "gRPC request messages, by service and method.",
            |m| m.messages_in,
        ),
        (
            "grpc_sent_messages_total",
            "counter",
            "gRPC response messages, by service and method.",
            |m| m.messages_out,
        ),
        (
            "grpc_calls_in_flight",
            "gauge",
            "gRPC calls not yet ended, by service and method.",
            |m| m.in_flight,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP larder_{name} {help}\n# TYPE larder_{name} {kind}"
        );
        for m in &g.methods {
            let _ = writeln!(out, "larder_{name}{{{}}} {}", labels(m), get(m));
        }
    }
}

/// The status page's gRPC section: a row per method called.
pub(super) fn html(g: &GrpcFigures) -> String {
    use larder_core::size::format_size;
    use std::fmt::Write as _;
    if g.methods.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for m in &g.methods {
        let short = m.service.rsplit('.').next().unwrap_or(m.service);
        let latency = |q: Option<f64>| q.map_or_else(|| "-".to_owned(), super::format_seconds);
        let codes: Vec<String> = m.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = write!(
            rows,
            "<tr><td title=\"{}\">{short}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=grpc-p50>{}</td><td class=grpc-p99>{}</td><td>{}</td></tr>",
            m.service,
            m.method,
            m.calls,
            m.in_flight,
            m.errors,
            format_size(m.bytes_in),
            format_size(m.bytes_out),
            latency(m.p50_seconds),
            latency(m.p99_seconds),
            codes.join(", "),
        );
    }
    format!(
        "<h2>gRPC</h2>
<p>Per method: calls ended, in flight, errors (a status other than OK and NOT_FOUND), message bytes received and sent, and latency from a call's arrival to its status, interpolated in the buckets of <code>larder_grpc_call_duration_seconds</code>.</p>
<table id=grpc>
<tr><th>service</th><th>method</th><th>calls</th><th>in flight</th><th>errors</th><th>in</th><th>out</th><th>p50</th><th>p99</th><th>statuses</th></tr>
{rows}
</table>
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAPI: &str = "build.bazel.remote.execution.v2";
    const ASSET: &str = "build.bazel.remote.asset.v1";

    #[test]
    fn methods_are_known_by_their_path() {
        assert_eq!(
            METHODS[method_of(&format!(
                "/{REAPI}.ContentAddressableStorage/FindMissingBlobs"
            ))]
            .1,
            "FindMissingBlobs"
        );
        assert_eq!(
            METHODS[method_of("/google.bytestream.ByteStream/Read")].1,
            "Read"
        );
        assert_eq!(
            METHODS[method_of(&format!("/{ASSET}.Push/PushBlob"))].1,
            "PushBlob"
        );
        for unknown in [
            "/google.bytestream.ByteStream/Nope",
            "/google.bytestream.ByteStream",
            "/other/other",
            "",
            "/",
        ] {
            assert_eq!(method_of(unknown), OTHER_METHOD, "{unknown}");
        }
    }

    #[test]
    fn status_codes_parse() {
        assert_eq!(code_of(b"0"), OK);
        assert_eq!(code_of(b"5"), NOT_FOUND);
        assert_eq!(CODES[code_of(b"16")], "UNAUTHENTICATED");
        assert_eq!(code_of(b"17"), UNKNOWN);
        assert_eq!(code_of(b"x"), UNKNOWN);
    }

    #[test]
    fn framing_counts_messages_split_anywhere() {
        // Three messages of 3, 0 and 300 bytes.
        let mut wire = Vec::new();
        for len in [3u32, 0, 300] {
            wire.push(0);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for split in [1, 2, 4, 5, 6, 64, wire.len()] {
            let mut f = Framing::default();
            for piece in wire.chunks(split) {
                f.feed(piece);
            }
            assert_eq!((f.messages, f.bytes), (3, 303), "frames of {split}");
            assert_eq!((f.remaining, f.prefix_len), (0, 0));
        }
    }

    #[test]
    fn a_call_counts_once_and_unfinished_calls_as_cancelled() {
        let m = Arc::new(Metrics::default());
        let read = method_of("/google.bytestream.ByteStream/Read");
        let mut call = Call::begin(Arc::clone(&m), read, Instant::now());
        call.framing.feed(&[0, 0, 0, 0, 2, 1, 2]);
        call.end(NOT_FOUND);
        call.end(OK);
        drop(call);
        drop(Call::begin(Arc::clone(&m), read, Instant::now()));
        let g = m.grpc.figures();
        assert_eq!(g.methods.len(), 1);
        let f = &g.methods[0];
        assert_eq!(f.codes, vec![("CANCELLED", 1), ("NOT_FOUND", 1)]);
        assert_eq!((f.calls, f.errors, f.in_flight), (2, 1, 0));
        assert_eq!((f.bytes_out, f.messages_out), (2, 1));
        assert_eq!(m.protocols[GRPC].misses.load(Ordering::Relaxed), 1);
    }
}

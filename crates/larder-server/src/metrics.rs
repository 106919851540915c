//! What the server counts, and the pages that show it: `/metrics` (Prometheus text format) and
//! `/status` (an HTML page, or JSON with `/status.json` or `Accept: application/json`).
//!
//! Counting is a handful of relaxed atomic adds per request (no locks): requests by protocol
//! and status, hits and misses (a `GET`/`HEAD` answered 200 or 404 below a protocol prefix),
//! bytes in and out (from `Content-Length`, which every larder response carries and every
//! supported client sends), and evictions by the server's clean-up. Store totals and free disk
//! are read when a page is asked for.
//!
//! Each request's latency (from its arrival to its response head) lands in a fixed-bucket
//! histogram per protocol and operation (the request method), and its counts in a ring of 60
//! per-minute slots per protocol, from which the status page draws the last hour. Both are
//! arrays of atomics: recording a request allocates nothing and takes no lock.
//!
//! gRPC calls are also counted per method, with their status, message bytes and latency to
//! the end of the call (see [`grpc`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::config::ServerConfig;

mod grpc;
pub(crate) use grpc::track_grpc;

/// The protocols, in the order of the counters.
const PROTOCOLS: [&str; 7] = ["native", "ccache", "bazel", "dav", "waf", "grpc", "other"];
/// The index of gRPC (REAPI v2 and ByteStream) in [`PROTOCOLS`].
const GRPC: usize = 5;
/// Status codes with their own counter; any other code counts under the last slot (`0`).
const STATUSES: [u16; 18] = [
    200, 201, 204, 206, 207, 304, 400, 401, 403, 404, 405, 409, 413, 416, 500, 503, 507, 0,
];

/// The limits of [`crate::Limits`] that count when they trip, in the order of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// A connection over `max_connections`, answered 503.
    Connections,
    /// Request headers not complete within `header_timeout`.
    HeaderTimeout,
    /// A connection idle for `idle_timeout`.
    IdleTimeout,
    /// A response the client stopped reading for `idle_timeout`.
    SendStall,
    /// An upload slower than `min_upload_rate`.
    UploadRate,
    /// A disk reservation over `max_reserved_bytes` in total (received without one).
    Reservation,
    /// A native entry over `max_entry_bytes` or `max_entry_outputs`.
    Entry,
    /// A multipart body with too much before its first boundary.
    MultipartPreamble,
    /// A multipart part header over `multipart_header_bytes`.
    MultipartHeader,
    /// A multipart body with more than `multipart_parts` parts.
    MultipartParts,
    /// Connections still open at the shutdown deadline, cut.
    ShutdownCut,
}

impl Limit {
    const ALL: [Limit; 11] = [
        Limit::Connections,
        Limit::HeaderTimeout,
        Limit::IdleTimeout,
        Limit::SendStall,
        Limit::UploadRate,
        Limit::Reservation,
        Limit::Entry,
        Limit::MultipartPreamble,
        Limit::MultipartHeader,
        Limit::MultipartParts,
        Limit::ShutdownCut,
    ];

    /// The `limit` label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::HeaderTimeout => "header_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::SendStall => "send_stall",
            Limit::UploadRate => "upload_rate",
            Limit::Reservation => "reservation",
            Limit::Entry => "entry",
            Limit::MultipartPreamble => "multipart_preamble",
            Limit::MultipartHeader => "multipart_header",
            Limit::MultipartParts => "multipart_parts",
            Limit::ShutdownCut => "shutdown_cut",
        }
    }
}

/// The operations latency is kept for: the request method, lowercased; any other method counts
/// under `other`.
const OPS: [&str; 5] = ["get", "head", "put", "post", "other"];

fn op_of(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        _ => 4,
    }
}

/// Upper bounds of the latency buckets, in nanoseconds (100 µs to 60 s); a last bucket takes
/// anything slower (`+Inf`).
const BOUNDS_NS: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// A latency histogram: a count per bucket (not cumulative) and the sum of the latencies.
/// The total count is the sum of the buckets, so `_count` and the `+Inf` bucket always agree.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, ns: u64) {
        let slot = BOUNDS_NS.partition_point(|b| *b < ns);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn load(&self) -> ([u64; BOUNDS_NS.len() + 1], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum_ns.load(Ordering::Relaxed),
        )
    }
}

/// The `q` quantile (0 to 1) of the latencies counted in `buckets` (per bucket, not
/// cumulative), in seconds, interpolated linearly inside the bucket it falls in (as
/// Prometheus' `histogram_quantile` does); `None` when nothing was counted. A quantile in the
/// `+Inf` bucket is reported as the largest finite bound.
fn quantile(buckets: &[u64; BOUNDS_NS.len() + 1], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        if *n > 0 && (below + n) as f64 >= rank {
            let Some(upper) = BOUNDS_NS.get(i) else {
                return Some(BOUNDS_NS[BOUNDS_NS.len() - 1] as f64 / 1e9);
            };
            let lower = if i == 0 { 0 } else { BOUNDS_NS[i - 1] };
            let within = ((rank - below as f64) / *n as f64).clamp(0.0, 1.0);
            return Some((lower as f64 + (upper - lower) as f64 * within) / 1e9);
        }
        below += n;
    }
    Some(BOUNDS_NS[BOUNDS_NS.len() - 1] as f64 / 1e9)
}

/// Minutes of history kept for the status page's charts.
const MINUTES: usize = 60;

/// One minute of one protocol's traffic; `minute` (minutes since the server started) says
/// which minute the counts belong to.
#[derive(Debug, Default)]
struct MinuteSlot {
    minute: AtomicU64,
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl MinuteSlot {
    fn counters(&self) -> [&AtomicU64; 5] {
        [
            &self.requests,
            &self.hits,
            &self.misses,
            &self.bytes_in,
            &self.bytes_out,
        ]
    }
}

/// One protocol's counters.
#[derive(Debug)]
struct ProtocolCounters {
    by_status: [AtomicU64; STATUSES.len()],
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency: [Histogram; OPS.len()],
    /// Minute `m` is counted in slot `m % MINUTES`.
    minutes: [MinuteSlot; MINUTES],
}

impl Default for ProtocolCounters {
    fn default() -> Self {
        ProtocolCounters {
            by_status: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: Default::default(),
            minutes: std::array::from_fn(|_| MinuteSlot::default()),
        }
    }
}

impl ProtocolCounters {
    /// The slot of `minute`, cleared first when it still holds an older minute. The request
    /// that moves the slot on clears it; a request of the new minute that adds in between can
    /// be lost, which a per-minute chart can afford (a lock could not be).
    fn minute_slot(&self, minute: u64) -> &MinuteSlot {
        let slot = &self.minutes[(minute % MINUTES as u64) as usize];
        let seen = slot.minute.load(Ordering::Relaxed);
        if seen < minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            for c in slot.counters() {
                c.store(0, Ordering::Relaxed);
            }
        }
        slot
    }

    /// The last hour up to `now_minute`, oldest minute first: requests, hits, misses, bytes
    /// in, bytes out.
    fn last_hour(&self, now_minute: u64) -> [Vec<u64>; 5] {
        let mut out: [Vec<u64>; 5] = Default::default();
        for v in &mut out {
            v.reserve(MINUTES);
        }
        for back in (0..MINUTES as u64).rev() {
            let values = now_minute
                .checked_sub(back)
                .map(|m| (m, &self.minutes[(m % MINUTES as u64) as usize]))
                .filter(|(m, slot)| slot.minute.load(Ordering::Relaxed) == *m)
                .map_or([0; 5], |(_, slot)| {
                    slot.counters().map(|c| c.load(Ordering::Relaxed))
                });
            for (v, x) in out.iter_mut().zip(values) {
                v.push(x);
            }
        }
        out
    }
}

/// The server's counters, shared by every request.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    protocols: [ProtocolCounters; PROTOCOLS.len()],
    evicted_entries: AtomicU64,
    evicted_bytes: AtomicU64,
    cleanups: AtomicU64,
    out_of_space: AtomicU64,
    refused_entries: AtomicU64,
    refused_bytes: AtomicU64,
    untrusted: AtomicU64,
    trips: [AtomicU64; Limit::ALL.len()],
    /// Connections being served.
    connections: AtomicU64,
    /// Per gRPC method.
    grpc: grpc::GrpcCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            protocols: Default::default(),
            evicted_entries: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            cleanups: AtomicU64::new(0),
            out_of_space: AtomicU64::new(0),
            refused_entries: AtomicU64::new(0),
            refused_bytes: AtomicU64::new(0),
            untrusted: AtomicU64::new(0),
            trips: Default::default(),
            connections: AtomicU64::new(0),
            grpc: Default::default(),
        }
    }
}

impl Metrics {
    /// Count a clean-up's evictions.
    pub(crate) fn evicted(&self, entries: u64, bytes: u64) {
        self.cleanups.fetch_add(1, Ordering::Relaxed);
        self.evicted_entries.fetch_add(entries, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count a write refused for lack of disk space.
    pub(crate) fn out_of_space(&self) {
        self.out_of_space.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an entry the admission policy refused.
    pub(crate) fn refused(&self, bytes: u64) {
        self.refused_entries.fetch_add(1, Ordering::Relaxed);
        self.refused_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count an entry push refused because no trusted key signed it.
    pub(crate) fn untrusted(&self) {
        self.untrusted.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a limit that tripped.
    pub(crate) fn tripped(&self, limit: Limit) {
        self.trips[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How often `limit` tripped.
    pub(crate) fn trips(&self, limit: Limit) -> u64 {
        self.trips[limit as usize].load(Ordering::Relaxed)
    }

    /// Count a connection opened (`true`) or closed.
    pub(crate) fn connection(&self, opened: bool) {
        if opened {
            self.connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Minutes since the server started, at `now`.
    fn minute_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs() / 60
    }

    /// Count one request of `protocol` that took `latency` until its response head, answered
    /// in minute `minute` (see [`Metrics::minute_at`]).
    fn record(
        &self,
        protocol: usize,
        method: &Method,
        status: StatusCode,
        bytes: (u64, u64),
        latency: Duration,
        minute: u64,
    ) {
        let p = &self.protocols[protocol];
        let slot = STATUSES
            .iter()
            .position(|s| *s == status.as_u16())
            .unwrap_or(STATUSES.len() - 1);
        p.by_status[slot].fetch_add(1, Ordering::Relaxed);
        let now = p.minute_slot(minute);
        now.requests.fetch_add(1, Ordering::Relaxed);
        // Reads of the server's own pages (`other`) are neither hits nor misses.
        let lookup = protocol != PROTOCOLS.len() - 1;
        if lookup && (*method == Method::GET || *method == Method::HEAD) {
            match status {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                    p.hits.fetch_add(1, Ordering::Relaxed);
                    now.hits.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::NOT_FOUND => {
                    p.misses.fetch_add(1, Ordering::Relaxed);
                    now.misses.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        p.bytes_in.fetch_add(bytes.0, Ordering::Relaxed);
        p.bytes_out.fetch_add(bytes.1, Ordering::Relaxed);
        now.bytes_in.fetch_add(bytes.0, Ordering::Relaxed);
        now.bytes_out.fetch_add(bytes.1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        p.latency[op_of(method)].observe(ns);
    }
}

/// Which protocol a request path belongs to, by the configured prefixes.
fn protocol_of(config: &ServerConfig, path: &str) -> Option<usize> {
    let below = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let prefixes = [
        &config.native_prefix,
        &config.ccache_prefix,
        &config.bazel_prefix,
        &config.dav_prefix,
        &config.waf_prefix,
    ];
    prefixes.iter().position(|p| below(p))
}

fn length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Middleware: enforce access control ([`crate::auth`]) and count every request below a
/// protocol prefix (the pages themselves and `/healthz` count as `other`). One middleware, not
/// two: each layer costs a boxed service clone per request.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let protocol = protocol_of(&state.config, request.uri().path()).unwrap_or(PROTOCOLS.len() - 1);
    let method = request.method().clone();
    let bytes_in = length(request.headers());
    // Access control runs inside the counting, so refusals are counted too.
    let response = match crate::auth::refusal(&state.config.access, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    if response.status() == StatusCode::INSUFFICIENT_STORAGE {
        state.metrics.out_of_space();
    }
    let bytes_out = if method == Method::HEAD {
        0
    } else {
        length(response.headers())
    };
    let answered = Instant::now();
    state.metrics.record(
        protocol,
        &method,
        response.status(),
        (bytes_in, bytes_out),
        answered.saturating_duration_since(arrived),
        state.metrics.minute_at(answered),
    );
    response
}

/// Everything the pages show.
#[derive(Debug, Serialize)]
struct Snapshot {
    version: &'static str,
    uptime_seconds: u64,
    read_only: bool,
    store: StoreFigures,
    disk_free_bytes: Option<u64>,
    evicted_entries: u64,
    evicted_bytes: u64,
    cleanups: u64,
    out_of_space_refusals: u64,
    /// Entries (and their bytes) the admission policy kept out.
    admission_refused_entries: u64,
    admission_refused_bytes: u64,
    /// Entry pushes refused because no trusted key signed them (`--trust-require`).
    untrusted_refused: u64,
    /// When replicating an upstream store.
    upstream: Option<UpstreamFigures>,
    /// Connections being served.
    connections: u64,
    /// Disk space reserved for uploads in flight.
    reserved_bytes: u64,
    /// `(limit, trips)` for every limit of [`crate::Limits`].
    limit_trips: Vec<(&'static str, u64)>,
    protocols: Vec<ProtocolFigures>,
    /// Per gRPC method.
    grpc: grpc::GrpcFigures,
    /// Blob reads of the server's directory store, and its scrub (absent when the server was
    /// given another store).
    integrity: Option<IntegrityFigures>,
}

/// How blob reads were checked, and the background scrub.
#[derive(Debug, Serialize)]
struct IntegrityFigures {
    /// Reads of blobs whose file was unchanged since verified: sent without hashing.
    trusted_reads: u64,
    trusted_bytes: u64,
    /// Reads that verified as they streamed.
    verified_reads: u64,
    hashed_bytes: u64,
    /// Blobs removed because a read found them damaged.
    corrupt_on_read: u64,
    /// Blobs the server remembers as verified, with their files' identities.
    verified_blobs: u64,
    /// `None` when the scrub is off.
    scrub: Option<ScrubFigures>,
}

#[derive(Debug, Serialize)]
struct ScrubFigures {
    rate_bytes_per_second: u64,
    running: bool,
    passes: u64,
    /// The current (or last) pass: blobs and bytes found when it started, and done so far.
    pass_blobs_total: u64,
    pass_blobs_done: u64,
    pass_bytes_total: u64,
    pass_bytes_done: u64,
    /// 0 to 1, by bytes.
    pass_fraction: f64,
    pass_corrupt: u64,
    /// Over all passes.
    blobs_checked: u64,
    bytes_checked: u64,
    corrupt_removed: u64,
    unreadable: u64,
    /// When the last complete pass ended, ms since the epoch.
    last_pass_end_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct UpstreamFigures {
    fetched: u64,
    fetch_failures: u64,
    uploaded: u64,
    upload_failures: u64,
    queued: u64,
    /// The upstream's own budget, when the server trims it.
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    trims: u64,
    trim_failures: u64,
    trim_evicted_entries: u64,
    trim_evicted_bytes: u64,
}

#[derive(Debug, Serialize)]
struct StoreFigures {
    entries: u64,
    bytes: u64,
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    min_free_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ProtocolFigures {
    protocol: &'static str,
    prefix: Option<String>,
    requests: u64,
    hits: u64,
    misses: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// `(status, count)` for every status seen; status 0 is "any other".
    statuses: Vec<(u16, u64)>,
    /// Median and 99th percentile latency over every operation, in seconds (`null` before the
    /// first request).
    p50_seconds: Option<f64>,
    p99_seconds: Option<f64>,
    /// Latency per operation seen.
    latency: Vec<OpLatency>,
    /// Per-minute counts over the last hour, oldest first.
    last_hour: LastHour,
}

/// One operation's latency figures: from a request's arrival to its response head.
#[derive(Debug, Serialize)]
struct OpLatency {
    op: &'static str,
    count: u64,
    sum_seconds: f64,
    p50_seconds: f64,
    p99_seconds: f64,
    /// Counts per bucket of [`BOUNDS_NS`], not cumulative, the last one `+Inf`.
    #[serde(skip)]
    buckets: [u64; BOUNDS_NS.len() + 1],
}

/// Sixty per-minute counts each, the current (partial) minute last.
#[derive(Debug, Serialize)]
struct LastHour {
    requests: Vec<u64>,
    hits: Vec<u64>,
    misses: Vec<u64>,
    bytes_in: Vec<u64>,
    bytes_out: Vec<u64>,
}

async fn snapshot(state: &AppState) -> Snapshot {
    let m = &state.metrics;
    let (entries, bytes) = match state.store.stats().await {
        Ok(s) => (s.entries, s.bytes),
        Err(e) => {
            tracing::warn!("larder-server: reading store stats: {e}");
            (0, 0)
        }
    };
    let cfg = &state.config;
    let prefixes = [
        Some(cfg.native_prefix.clone()),
        Some(cfg.ccache_prefix.clone()),
        Some(cfg.bazel_prefix.clone()),
        Some(cfg.dav_prefix.clone()),
        Some(cfg.waf_prefix.clone()),
        None,
        None,
    ];
    let now_minute = m.minute_at(Instant::now());
    let protocols = PROTOCOLS
        .iter()
        .zip(&m.protocols)
        .zip(prefixes)
        .map(|((name, p), prefix)| {
            let statuses: Vec<(u16, u64)> = STATUSES
                .iter()
                .zip(&p.by_status)
                .map(|(s, c)| (*s, c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect();
            let mut all = [0u64; BOUNDS_NS.len() + 1];
            let latency: Vec<OpLatency> = OPS
                .iter()
                .zip(&p.latency)
                .filter_map(|(op, h)| {
                    let (buckets, sum_ns) = h.load();
                    for (a, b) in all.iter_mut().zip(&buckets) {
                        *a += b;
                    }
                    Some(OpLatency {
                        op,
                        count: buckets.iter().sum(),
                        sum_seconds: sum_ns as f64 / 1e9,
                        p50_seconds: quantile(&buckets, 0.5)?,
                        p99_seconds: quantile(&buckets, 0.99)?,
                        buckets,
                    })
                })
                .collect();
            let [requests, hits, misses, bytes_in, bytes_out] = p.last_hour(now_minute);
            ProtocolFigures {
                protocol: name,
                prefix,
                requests: statuses.iter().map(|(_, c)| c).sum(),
                hits: p.hits.load(Ordering::Relaxed),
                misses: p.misses.load(Ordering::Relaxed),
                bytes_in: p.bytes_in.load(Ordering::Relaxed),
                bytes_out: p.bytes_out.load(Ordering::Relaxed),
                statuses,
                p50_seconds: quantile(&all, 0.5),
                p99_seconds: quantile(&all, 0.99),
                latency,
                last_hour: LastHour {
                    requests,
                    hits,
                    misses,
                    bytes_in,
                    bytes_out,
                },
            }
        })
        .collect();
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: m.started.elapsed().as_secs(),
        read_only: cfg.read_only,
        store: StoreFigures {
            entries,
            bytes,
            max_bytes: cfg.budget.max_bytes,
            max_entries: cfg.budget.max_entries,
            min_free_bytes: cfg.budget.min_free_bytes,
        },
        disk_free_bytes: crate::disk::free_space(&cfg.dir),
        evicted_entries: m.evicted_entries.load(Ordering::Relaxed),
        evicted_bytes: m.evicted_bytes.load(Ordering::Relaxed),
        cleanups: m.cleanups.load(Ordering::Relaxed),
        out_of_space_refusals: m.out_of_space.load(Ordering::Relaxed),
        admission_refused_entries: m.refused_entries.load(Ordering::Relaxed),
        admission_refused_bytes: m.refused_bytes.load(Ordering::Relaxed),
        untrusted_refused: m.untrusted.load(Ordering::Relaxed),
        upstream: state.replica.as_ref().map(|r| {
            let (trims, trim_failures, trim_evicted_entries, trim_evicted_bytes) = r.trims();
            UpstreamFigures {
                fetched: r.fetched(),
                fetch_failures: r.fetch_failures(),
                uploaded: r.uploaded(),
                upload_failures: r.upload_failures(),
                queued: r.queued(),
                max_bytes: r.upstream_budget().and_then(|b| b.max_bytes),
                max_entries: r.upstream_budget().and_then(|b| b.max_entries),
                trims,
                trim_failures,
                trim_evicted_entries,
                trim_evicted_bytes,
            }
        }),
        connections: m.connections.load(Ordering::Relaxed),
        reserved_bytes: state.reservations.held(),
        limit_trips: Limit::ALL
            .iter()
            .map(|l| (l.label(), m.trips(*l)))
            .collect(),
        protocols,
        grpc: m.grpc.figures(),
        integrity: integrity(state),
    }
}

fn integrity(state: &AppState) -> Option<IntegrityFigures> {
    let reads = state.local.as_ref()?.blob_reads();
    let scrub = state.scrub.as_ref().map(|p| {
        let s = p.status();
        ScrubFigures {
            rate_bytes_per_second: state.config.scrub.rate.unwrap_or(0),
            running: s.running,
            passes: s.passes,
            pass_blobs_total: s.pass_blobs_total,
            pass_blobs_done: s.pass_blobs_done,
            pass_bytes_total: s.pass_bytes_total,
            pass_bytes_done: s.pass_bytes_done,
            pass_fraction: s.fraction(),
            pass_corrupt: s.pass_corrupt,
            blobs_checked: s.blobs_checked,
            bytes_checked: s.bytes_checked,
            corrupt_removed: s.corrupt_removed,
            unreadable: s.unreadable,
            last_pass_end_ms: s.last_pass_end_ms,
        }
    });
    Some(IntegrityFigures {
        trusted_reads: reads.trusted,
        trusted_bytes: reads.trusted_bytes,
        verified_reads: reads.verified,
        hashed_bytes: reads.hashed_bytes,
        corrupt_on_read: reads.corrupt,
        verified_blobs: reads.recorded,
        scrub,
    })
}

/// The `larder_blob_*` and `larder_scrub_*` lines.
fn integrity_prometheus(out: &mut String, i: &IntegrityFigures) {
    let _ = writeln!(
        out,
        "# HELP larder_blob_reads_total Blob reads, by how they were checked: trusted (the file unchanged since it was verified: sent without hashing) or hashed (verified as it streamed).\n# TYPE larder_blob_reads_total counter\nlarder_blob_reads_total{{check=\"trusted\"}} {}\nlarder_blob_reads_total{{check=\"hashed\"}} {}",
        i.trusted_reads, i.verified_reads
    );
    let _ = writeln!(
        out,
        "# HELP larder_blob_read_bytes_total Bytes of blob reads: trusted (their sizes) and hashed (bytes hashed).\n# TYPE larder_blob_read_bytes_total counter\nlarder_blob_read_bytes_total{{check=\"trusted\"}} {}\nlarder_blob_read_bytes_total{{check=\"hashed\"}} {}",
        i.trusted_bytes, i.hashed_bytes
    );
    let mut lines: Vec<(&str, &str, &str, String)> = vec![
        (
            "blob_read_corrupt_total",
            "counter",
            "Blobs removed because a read found them damaged.",
            i.corrupt_on_read.to_string(),
        ),
        (
            "verified_blobs",
            "gauge",
            "Blobs remembered as verified, with their files' identities.",
            i.verified_blobs.to_string(),
        ),
    ];
    if let Some(s) = &i.scrub {
        lines.extend([
            (
                "scrub_rate_bytes",
                "gauge",
                "The scrub's rate: bytes (as stored) read per second at most.",
                s.rate_bytes_per_second.to_string(),
            ),
            (
                "scrub_running",
                "gauge",
                "1 while a scrub pass is under way.",
                u8::from(s.running).to_string(),
            ),
            (
                "scrub_pass_progress",
                "gauge",
                "How far the current (or last) scrub pass is, 0 to 1, by bytes.",
                s.pass_fraction.to_string(),
            ),
            (
                "scrub_passes_total",
                "counter",
                "Scrub passes completed.",
                s.passes.to_string(),
            ),
            (
                "scrub_blobs_total",
                "counter",
                "Blobs the scrub has read back and hashed.",
                s.blobs_checked.to_string(),
            ),
            (
                "scrub_bytes_total",
                "counter",
                "Bytes (as stored) the scrub has read.",
                s.bytes_checked.to_string(),
            ),
            (
                "scrub_corrupt_total",
                "counter",
                "Damaged blobs the scrub found and removed.",
                s.corrupt_removed.to_string(),
            ),
            (
                "scrub_unreadable_total",
                "counter",
                "Blobs the scrub could not read (left in place; see the log).",
                s.unreadable.to_string(),
            ),
        ]);
        if let Some(ms) = s.last_pass_end_ms {
            lines.push((
                "scrub_last_pass_end_timestamp_seconds",
                "gauge",
                "When the last complete scrub pass ended.",
                format!("{:.3}", ms as f64 / 1000.0),
            ));
        }
    }
    for (name, kind, help, v) in lines {
        let _ = writeln!(
            out,
            "# HELP larder_{name} {help}\n# TYPE larder_{name} {kind}\nlarder_{name} {v}"
        );
    }
}

/// The status page's integrity section.
fn integrity_html(i: &IntegrityFigures) -> String {
    use larder_core::size::format_size;
    let scrub = match &i.scrub {
        None => "<tr><th>scrub</th><td>off</td></tr>".to_owned(),
        Some(s) => {
            let state = if s.running {
                format!(
                    "pass {} running: {:.1} % ({} of {} blobs, {} of {}), {} damaged so far",
                    s.passes + 1,
                    100.0 * s.pass_fraction,
                    s.pass_blobs_done,
                    s.pass_blobs_total,
                    format_size(s.pass_bytes_done),
                    format_size(s.pass_bytes_total),
                    s.pass_corrupt,
                )
            } else if s.passes == 0 {
                "waiting for its first pass".to_owned()
            } else {
                format!(
                    "idle; last pass: {} blobs, {}, {} damaged",
                    s.pass_blobs_done,
                    format_size(s.pass_bytes_done),
                    s.pass_corrupt
                )
            };
            format!(
                "<tr><th>scrub</th><td class=scrub>{state}</td></tr>\n<tr><th>scrubbed</th><td>{} passes, {} blobs, {} read at up to {}/s; {} damaged blobs removed, {} unreadable</td></tr>",
                s.passes,
                s.blobs_checked,
                format_size(s.bytes_checked),
                format_size(s.rate_bytes_per_second),
                s.corrupt_removed,
                s.unreadable,
            )
        }
    };
    format!(
        "<h2>Integrity</h2>\n<p>Blobs are verified when written; a read of a blob whose file is unchanged since it was verified is sent without hashing, others are verified as they stream. The scrub reads every blob back and removes the damaged ones.</p>\n<table>\n<tr><th>reads sent without hashing</th><td>{} ({})</td></tr>\n<tr><th>reads verified</th><td>{} ({} hashed)</td></tr>\n<tr><th>damaged blobs removed on read</th><td>{}</td></tr>\n<tr><th>blobs remembered as verified</th><td>{}</td></tr>\n{scrub}\n</table>\n",
        i.trusted_reads,
        format_size(i.trusted_bytes),
        i.verified_reads,
        format_size(i.hashed_bytes),
        i.corrupt_on_read,
        i.verified_blobs,
    )
}

/// `GET /metrics`: Prometheus text exposition format.
pub(crate) async fn prometheus(State(state): State<AppState>) -> Response {
    let s = snapshot(&state).await;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP larder_http_requests_total HTTP requests answered, by protocol and status code (0 = any other code).\n# TYPE larder_http_requests_total counter"
    );
    for p in &s.protocols {
        for (status, count) in &p.statuses {
            let _ = writeln!(
                out,
                "larder_http_requests_total{{protocol=\"{}\",code=\"{status}\"}} {count}",
                p.protocol
            );
        }
    }
    for (name, help, get) in [
        (
            "hits_total",
            "GET/HEAD requests answered 200 or 206, by protocol (gRPC: ByteStream Read, GetActionResult and Remote Asset Fetch calls answered OK).",
            (|p: &ProtocolFigures| p.hits) as fn(&ProtocolFigures) -> u64,
        ),
        (
            "misses_total",
            "GET/HEAD requests answered 404, by protocol (gRPC: those lookups answered NOT_FOUND).",
            |p| p.misses,
        ),
        (
            "received_bytes_total",
            "Request body bytes (Content-Length; gRPC: request message bytes), by protocol.",
            |p| p.bytes_in,
        ),
        (
            "sent_bytes_total",
            "Response body bytes (Content-Length; gRPC: response message bytes), by protocol.",
            |p| p.bytes_out,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP larder_{name} {help}\n# TYPE larder_{name} counter"
        );
        for p in &s.protocols {
            let _ = writeln!(
                out,
                "larder_{name}{{protocol=\"{}\"}} {}",
                p.protocol,
                get(p)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP larder_request_duration_seconds Time from a request's arrival to its response head, by protocol and operation (the request method; other methods count as op=\"other\").\n# TYPE larder_request_duration_seconds histogram"
    );
    for p in &s.protocols {
        for l in &p.latency {
            write_histogram(
                &mut out,
                "larder_request_duration_seconds",
                &format!("protocol=\"{}\",op=\"{}\"", p.protocol, l.op),
                &l.buckets,
                l.sum_seconds,
                l.count,
            );
        }
    }
    grpc::prometheus(&mut out, &s.grpc);
    if let Some(i) = &s.integrity {
        integrity_prometheus(&mut out, i);
    }
    let _ = writeln!(
        out,
        "# HELP larder_limit_trips_total Requests or connections stopped by a limit of larder serve, by limit.\n# TYPE larder_limit_trips_total counter"
    );
    for (limit, n) in &s.limit_trips {
        let _ = writeln!(out, "larder_limit_trips_total{{limit=\"{limit}\"}} {n}");
    }
    let gauges: [(&str, &str, &str, Option<u64>); 13] = [
        (
            "reserved_bytes",
            "gauge",
            "Disk space reserved (fallocate) for uploads in flight.",
            Some(s.reserved_bytes),
        ),
        (
            "connections",
            "gauge",
            "Connections being served.",
            Some(s.connections),
        ),
        (
            "evicted_entries_total",
            "counter",
            "Entries evicted by the server's clean-up.",
            Some(s.evicted_entries),
        ),
        (
            "evicted_bytes_total",
            "counter",
            "Bytes freed by the server's clean-up.",
            Some(s.evicted_bytes),
        ),
        (
            "out_of_space_total",
            "counter",
            "Writes refused with 507 for lack of disk space.",
            Some(s.out_of_space_refusals),
        ),
        (
            "admission_refused_total",
            "counter",
            "Entries the admission policy kept out of the store.",
            Some(s.admission_refused_entries),
        ),
        (
            "admission_refused_bytes_total",
            "counter",
            "Bytes of the entries the admission policy kept out.",
            Some(s.admission_refused_bytes),
        ),
        (
            "untrusted_refused_total",
            "counter",
            "Entry pushes refused with 403 because no trusted key signed them (--trust-require).",
            Some(s.untrusted_refused),
        ),
        (
            "store_entries",
            "gauge",
            "Entries in the store.",
            Some(s.store.entries),
        ),
        (
            "store_bytes",
            "gauge",
            "Bytes in the store (as stored).",
            Some(s.store.bytes),
        ),
        (
            "store_max_bytes",
            "gauge",
            "The configured size budget.",
            s.store.max_bytes,
        ),
        (
            "disk_free_bytes",
            "gauge",
            "Free space on the store's disk.",
            s.disk_free_bytes,
        ),
        (
            "uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            Some(s.uptime_seconds),
        ),
    ];
    if let Some(u) = &s.upstream {
        for (name, kind, help, v) in [
            (
                "upstream_fetched_total",
                "counter",
                "Entries fetched from the upstream store on a local miss.",
                u.fetched,
            ),
            (
                "upstream_fetch_failures_total",
                "counter",
                "Fetches from upstream that failed (served as misses).",
                u.fetch_failures,
            ),
            (
                "upstream_uploaded_total",
                "counter",
                "Entries uploaded to the upstream store.",
                u.uploaded,
            ),
            (
                "upstream_upload_failures_total",
                "counter",
                "Upload attempts that failed (retried).",
                u.upload_failures,
            ),
            (
                "upstream_queued",
                "gauge",
                "Entries waiting in the upload queue.",
                u.queued,
            ),
            (
                "upstream_trims_total",
                "counter",
                "Trims of the upstream store to its own budget that ran.",
                u.trims,
            ),
            (
                "upstream_trim_failures_total",
                "counter",
                "Trims of the upstream store that failed.",
                u.trim_failures,
            ),
            (
                "upstream_evicted_entries_total",
                "counter",
                "Entries evicted from the upstream store by its trims.",
                u.trim_evicted_entries,
            ),
            (
                "upstream_evicted_bytes_total",
                "counter",
                "Bytes freed in the upstream store by its trims.",
                u.trim_evicted_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP larder_{name} {help}\n# TYPE larder_{name} {kind}\nlarder_{name} {v}"
            );
        }
    }
    for (name, kind, help, value) in gauges {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP larder_{name} {help}\n# TYPE larder_{name} {kind}\nlarder_{name} {v}"
            );
        }
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The `_bucket` (cumulative), `_sum` and `_count` lines of the histogram `name` with `labels`,
/// from its counts per bucket of [`BOUNDS_NS`].
fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: &[u64; BOUNDS_NS.len() + 1],
    sum_seconds: f64,
    count: u64,
) {
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let _ = match BOUNDS_NS.get(i) {
            Some(b) => writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                *b as f64 / 1e9
            ),
            None => writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}"),
        };
    }
    let _ = writeln!(
        out,
        "{name}_sum{{{labels}}} {sum_seconds}\n{name}_count{{{labels}}} {count}"
    );
}

/// `GET /status`: HTML for people, JSON for `Accept: application/json`.
pub(crate) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        status_json(State(state)).await
    } else {
        Html(render_html(&snapshot(&state).await)).into_response()
    }
}

/// `GET /status.json`.
pub(crate) async fn status_json(State(state): State<AppState>) -> Response {
    axum::Json(snapshot(&state).await).into_response()
}

fn render_html(s: &Snapshot) -> String {
    use larder_core::size::format_size;
    let opt_size = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), format_size);
    let mut rows = String::new();
    let mut latency = String::new();
    let mut charts = String::new();
    for p in s.protocols.iter().filter(|p| p.requests > 0) {
        let reads = p.hits + p.misses;
        let ratio = if reads == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} %", 100.0 * p.hits as f64 / reads as f64)
        };
        let statuses: Vec<String> = p
            .statuses
            .iter()
            .map(|(code, n)| {
                if *code == 0 {
                    format!("other: {n}")
                } else {
                    format!("{code}: {n}")
                }
            })
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=p50>{}</td><td class=p99>{}</td><td>{}</td></tr>",
            p.protocol,
            p.prefix.as_deref().unwrap_or(""),
            p.requests,
            p.hits,
            p.misses,
            ratio,
            format_size(p.bytes_in),
            format_size(p.bytes_out),
            p.p50_seconds.map_or_else(|| "-".to_owned(), format_seconds),
            p.p99_seconds.map_or_else(|| "-".to_owned(), format_seconds),
            statuses.join(", "),
        );
        for l in &p.latency {
            let _ = write!(
                latency,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.protocol,
                l.op,
                l.count,
                format_seconds(l.p50_seconds),
                format_seconds(l.p99_seconds),
            );
        }
        let h = &p.last_hour;
        let _ = write!(
            charts,
            "<tr><td>{}</td><td>{}<br><small>{} requests, busiest minute {}</small></td><td>{}<br><small>{}</small></td><td>{}<br><small>{} in, {} out</small></td></tr>",
            p.protocol,
            traffic_chart(&h.requests, "requests per minute"),
            h.requests.iter().sum::<u64>(),
            h.requests.iter().max().copied().unwrap_or(0),
            hit_ratio_chart(&h.hits, &h.misses),
            hour_ratio(&h.hits, &h.misses),
            traffic_chart(
                &h.bytes_in
                    .iter()
                    .zip(&h.bytes_out)
                    .map(|(i, o)| i + o)
                    .collect::<Vec<_>>(),
                "bytes per minute",
            ),
            format_size(h.bytes_in.iter().sum()),
            format_size(h.bytes_out.iter().sum()),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=11>no requests yet</td></tr>");
    }
    format!(
        "<!doctype html>
<html><head><meta charset=utf-8><title>larder serve</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{background:#eee}}svg.chart{{display:block;background:#fafafa}}</style>
</head><body>
<h1>larder serve</h1>
<p>version {version} &middot; up {uptime} s{ro} &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/status.json\">/status.json</a></p>
<h2>Store</h2>
<table>
<tr><th>entries</th><td>{entries}</td></tr>
<tr><th>size</th><td>{bytes}</td></tr>
<tr><th>size budget</th><td>{max_bytes}{size_bar}</td></tr>
<tr><th>entry budget</th><td>{max_entries}{entries_bar}</td></tr>
<tr><th>free disk</th><td>{free} (keep at least {min_free})</td></tr>
<tr><th>evicted</th><td>{evicted_entries} entries, {evicted_bytes} in {cleanups} clean-ups</td></tr>
<tr><th>writes refused for space</th><td>{oos}</td></tr>
<tr><th>entries refused by admission</th><td>{refused} ({refused_bytes})</td></tr>
{upstream}</table>
{integrity}<h2>Requests</h2>
<table>
<tr><th>protocol</th><th>prefix</th><th>requests</th><th>hits</th><th>misses</th><th>hit ratio</th><th>in</th><th>out</th><th>p50</th><th>p99</th><th>statuses</th></tr>
{rows}
</table>
{grpc}<h2>Last hour</h2>
<p>One bar per minute, the current minute on the right. Hit ratio: the grey part of a bar is the minute's reads (GET/HEAD answered 200 or 404), the green part their hits.</p>
<table>
<tr><th>protocol</th><th>requests</th><th>hit ratio</th><th>traffic</th></tr>
{charts}
</table>
<h2>Latency</h2>
<p>From a request's arrival to its response head; quantiles interpolated in the buckets of <code>larder_request_duration_seconds</code>.</p>
<table>
<tr><th>protocol</th><th>op</th><th>requests</th><th>p50</th><th>p99</th></tr>
{latency}
</table>
</body></html>
",
        version = s.version,
        uptime = s.uptime_seconds,
        grpc = grpc::html(&s.grpc),
        integrity = s.integrity.as_ref().map_or_else(String::new, integrity_html),
        ro = if s.read_only { " &middot; read-only" } else { "" },
        entries = s.store.entries,
        bytes = format_size(s.store.bytes),
        max_bytes = opt_size(s.store.max_bytes),
        size_bar = s.store.max_bytes.map_or_else(String::new, |b| budget_bar(
            s.store.bytes,
            b,
            &format!("{} of {}", format_size(s.store.bytes), format_size(b))
        )),
        entries_bar = s.store.max_entries.map_or_else(String::new, |b| budget_bar(
            s.store.entries,
            b,
            &format!("{} of {} entries", s.store.entries, b)
        )),
        max_entries = s
            .store
            .max_entries
            .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        free = opt_size(s.disk_free_bytes),
        min_free = opt_size(s.store.min_free_bytes),
        evicted_entries = s.evicted_entries,
        evicted_bytes = format_size(s.evicted_bytes),
        cleanups = s.cleanups,
        oos = s.out_of_space_refusals,
        refused = s.admission_refused_entries,
        refused_bytes = format_size(s.admission_refused_bytes),
        upstream = s.upstream.as_ref().map_or_else(String::new, |u| {
            let budget = match (u.max_bytes, u.max_entries) {
                (None, None) => String::new(),
                (bytes, entries) => format!(
                    "; budget {} / {} entries: {} trims ({} failed) evicted {} entries, {}",
                    opt_size(bytes),
                    entries.map_or_else(|| "none".to_owned(), |n| n.to_string()),
                    u.trims,
                    u.trim_failures,
                    u.trim_evicted_entries,
                    format_size(u.trim_evicted_bytes)
                ),
            };
            format!(
                "<tr><th>upstream</th><td>{} fetched ({} failed), {} uploaded ({} failed attempts), {} queued{budget}</td></tr>\n",
                u.fetched, u.fetch_failures, u.uploaded, u.upload_failures, u.queued
            )
        }),
    )
}

/// A latency for people: microseconds, milliseconds or seconds, three significant digits or so.
fn format_seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The hit ratio over the whole hour, or `-` without reads.
fn hour_ratio(hits: &[u64], misses: &[u64]) -> String {
    let h: u64 = hits.iter().sum();
    let reads = h + misses.iter().sum::<u64>();
    if reads == 0 {
        "no reads".to_owned()
    } else {
        format!("{:.1} % of {reads} reads", 100.0 * h as f64 / reads as f64)
    }
}

/// Width of one minute's bar in the charts, in SVG units.
const BAR: usize = 4;
/// Height of the charts.
const CHART_HEIGHT: u64 = 40;

/// Opens an inline SVG of `width` by `height` with `label` as its accessible name and title.
fn svg_open(out: &mut String, width: usize, height: u64, label: &str) {
    let _ = write!(
        out,
        "<svg class=chart xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>"
    );
}

/// A bar per minute, scaled to the busiest minute.
fn traffic_chart(values: &[u64], what: &str) -> String {
    let max = values.iter().max().copied().unwrap_or(0);
    let mut out = String::new();
    svg_open(
        &mut out,
        values.len() * BAR,
        CHART_HEIGHT,
        &format!("{what}, last hour (busiest minute {max})"),
    );
    for (i, v) in values.iter().enumerate().filter(|(_, v)| **v > 0) {
        // At least one unit high, so a quiet minute with traffic still shows.
        let h = (v * CHART_HEIGHT).div_ceil(max.max(1)).max(1);
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"#4a78b5\"/>",
            i * BAR,
            CHART_HEIGHT - h,
            BAR - 1
        );
    }
    out.push_str("</svg>");
    out
}

/// Per minute with reads: a full-height grey bar, and a green bar as high as the hit ratio.
fn hit_ratio_chart(hits: &[u64], misses: &[u64]) -> String {
    let mut out = String::new();
    svg_open(
        &mut out,
        hits.len() * BAR,
        CHART_HEIGHT,
        "hit ratio per minute, last hour",
    );
    for (i, (h, m)) in hits.iter().zip(misses).enumerate() {
        let reads = h + m;
        if reads == 0 {
            continue;
        }
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"0\" width=\"{}\" height=\"{CHART_HEIGHT}\" fill=\"#ddd\"/>",
            i * BAR,
            BAR - 1
        );
        let high = h * CHART_HEIGHT / reads;
        if high > 0 {
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{high}\" fill=\"#3a9a4a\"><title>{:.0} %</title></rect>",
                i * BAR,
                CHART_HEIGHT - high,
                BAR - 1,
                100.0 * *h as f64 / reads as f64
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// `used` against `budget` as a horizontal bar (green, orange past 80 %, red past 95 %), with
/// `label` and the percentage under it.
fn budget_bar(used: u64, budget: u64, label: &str) -> String {
    const WIDTH: u64 = 240;
    let fraction = if budget == 0 {
        1.0
    } else {
        (used as f64 / budget as f64).min(1.0)
    };
    let colour = if fraction > 0.95 {
        "#c0392b"
    } else if fraction > 0.8 {
        "#e08e0b"
    } else {
        "#3a9a4a"
    };
    let label = format!(
        "{label} ({:.0} %)",
        100.0 * used as f64 / budget.max(1) as f64
    );
    let mut out = String::new();
    svg_open(&mut out, WIDTH as usize, 12, &label);
    let _ = write!(
        out,
        "<rect width=\"{WIDTH}\" height=\"12\" fill=\"#ddd\"/><rect class=used width=\"{:.1}\" height=\"12\" fill=\"{colour}\"/></svg><small>{label}</small>",
        fraction * WIDTH as f64
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let h = Histogram::default();
        h.observe(50_000); // 50 µs: first bucket
        h.observe(100_000); // on the bound: still the first (le is inclusive)
        h.observe(3_000_000); // 3 ms: the 5 ms bucket
        h.observe(120_000_000_000); // 2 min: +Inf
        let (buckets, sum) = h.load();
        assert_eq!(buckets[0], 2);
        assert_eq!(buckets[5], 1);
        assert_eq!(buckets[BOUNDS_NS.len()], 1);
        assert_eq!(buckets.iter().sum::<u64>(), 4);
        assert_eq!(sum, 50_000 + 100_000 + 3_000_000 + 120_000_000_000);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut b = [0u64; BOUNDS_NS.len() + 1];
        assert_eq!(quantile(&b, 0.5), None);
        // 100 requests in (1 ms, 2.5 ms]: the median is half-way through that bucket.
        b[4] = 100;
        let p50 = quantile(&b, 0.5).unwrap_or_default();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        let p99 = quantile(&b, 0.99).unwrap_or_default();
        assert!(p99 > 0.0024 && p99 <= 0.0025, "{p99}");
        // One slow request among 100 moves p99 no further than its bucket's lower part.
        b[4] = 99;
        b[12] = 1;
        let p99 = quantile(&b, 0.99).unwrap_or_default();
        assert!(p99 <= 0.0025, "{p99}");
        let p100 = quantile(&b, 1.0).unwrap_or_default();
        assert!(p100 > 0.5 && p100 <= 1.0, "{p100}");
        // Everything past the last bound: the last bound.
        let mut inf = [0u64; BOUNDS_NS.len() + 1];
        inf[BOUNDS_NS.len()] = 3;
        assert_eq!(quantile(&inf, 0.5), Some(60.0));
    }

    #[test]
    fn the_minute_ring_keeps_the_last_hour() {
        let p = ProtocolCounters::default();
        let hit = |minute| {
            let s = p.minute_slot(minute);
            s.requests.fetch_add(1, Ordering::Relaxed);
            s.hits.fetch_add(1, Ordering::Relaxed);
        };
        hit(0);
        hit(0);
        hit(5);
        let [requests, hits, ..] = p.last_hour(5);
        assert_eq!(requests.len(), MINUTES);
        assert_eq!(requests[MINUTES - 1], 1);
        assert_eq!(requests[MINUTES - 6], 2);
        assert_eq!(hits.iter().sum::<u64>(), 3);
        // An hour on, minute 65 reuses minute 5's slot, which is cleared first; minute 0 and 5
        // are out of the window.
        hit(65);
        let [requests, ..] = p.last_hour(65);
        assert_eq!(requests.iter().sum::<u64>(), 1);
        assert_eq!(requests[MINUTES - 1], 1);
        // Read later without traffic: minute 65 is 10 minutes back.
        let [requests, ..] = p.last_hour(75);
        assert_eq!(requests[MINUTES - 11], 1);
        assert_eq!(requests.iter().sum::<u64>(), 1);
    }

    #[test]
    fn record_counts_latency_by_operation_and_minute() {
        let m = Metrics::default();
        let ccache = 1;
        m.record(
            ccache,
            &Method::GET,
            StatusCode::OK,
            (0, 10),
            Duration::from_micros(300),
            2,
        );
        m.record(
            ccache,
            &Method::PUT,
            StatusCode::CREATED,
            (10, 0),
            Duration::from_millis(2),
            2,
        );
        let other = PROTOCOLS.len() - 1;
        m.record(
            other,
            &Method::GET,
            StatusCode::OK,
            (0, 100),
            Duration::from_micros(50),
            2,
        );
        assert_eq!(m.protocols[other].hits.load(Ordering::Relaxed), 0);
        assert_eq!(m.protocols[other].last_hour(2)[1].iter().sum::<u64>(), 0);
        let p = &m.protocols[ccache];
        assert_eq!(p.latency[op_of(&Method::GET)].load().0[2], 1);
        assert_eq!(p.latency[op_of(&Method::PUT)].load().0[4], 1);
        let [requests, hits, misses, bytes_in, bytes_out] = p.last_hour(2);
        assert_eq!(requests[MINUTES - 1], 2);
        assert_eq!(hits[MINUTES - 1], 1);
        assert_eq!(misses[MINUTES - 1], 0);
        assert_eq!((bytes_in[MINUTES - 1], bytes_out[MINUTES - 1]), (10, 10));
    }

    #[test]
    fn charts_are_inline_svg() {
        let mut requests = vec![0u64; MINUTES];
        requests[59] = 10;
        requests[58] = 1;
        let svg = traffic_chart(&requests, "requests per minute");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("y=\"0\" width=\"3\" height=\"40\""), "{svg}");

        let mut hits = vec![0u64; MINUTES];
        let mut misses = vec![0u64; MINUTES];
        hits[59] = 3;
        misses[59] = 1;
        let svg = hit_ratio_chart(&hits, &misses);
        assert!(svg.contains("<title>75 %</title>"), "{svg}");

        let bar = budget_bar(90, 100, "90 B of 100 B");
        assert!(
            bar.contains("width=\"216.0\"") && bar.contains("#e08e0b"),
            "{bar}"
        );
        assert!(bar.contains("<small>90 B of 100 B (90 %)</small>"), "{bar}");
        // Over budget: a full bar, and the real percentage.
        let over = budget_bar(500, 100, "over");
        assert!(
            over.contains("width=\"240.0\"") && over.contains("(500 %)"),
            "{over}"
        );
    }
}

//! What the server counts, and the pages that show it: `/metrics` (Prometheus text format) and
//! `/status` (an HTML page, or JSON with `/status.json` or `Accept: application/json`).
//!
//! Counting is a handful of relaxed atomic adds per request (no locks): requests by protocol
//! and status, hits and misses (a `GET`/`HEAD` answered 200 or 404 below a protocol prefix),
//! bytes in and out (from `Content-Length`, which every larder response carries and every
//! supported client sends), and evictions by the server's clean-up. Store totals and free disk
//! are read when a page is asked for.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::config::ServerConfig;

/// The protocols, in the order of the counters.
const PROTOCOLS: [&str; 6] = ["native", "ccache", "bazel", "dav", "waf", "other"];
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

/// One protocol's counters.
#[derive(Debug, Default)]
struct ProtocolCounters {
    by_status: [AtomicU64; STATUSES.len()],
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
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

    fn record(&self, protocol: usize, method: &Method, status: StatusCode, bytes: (u64, u64)) {
        let p = &self.protocols[protocol];
        let slot = STATUSES
            .iter()
            .position(|s| *s == status.as_u16())
            .unwrap_or(STATUSES.len() - 1);
        p.by_status[slot].fetch_add(1, Ordering::Relaxed);
        if *method == Method::GET || *method == Method::HEAD {
            match status {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                    p.hits.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::NOT_FOUND => {
                    p.misses.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        p.bytes_in.fetch_add(bytes.0, Ordering::Relaxed);
        p.bytes_out.fetch_add(bytes.1, Ordering::Relaxed);
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
    state
        .metrics
        .record(protocol, &method, response.status(), (bytes_in, bytes_out));
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
}

#[derive(Debug, Serialize)]
struct UpstreamFigures {
    fetched: u64,
    fetch_failures: u64,
    uploaded: u64,
    upload_failures: u64,
    queued: u64,
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
    ];
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
            ProtocolFigures {
                protocol: name,
                prefix,
                requests: statuses.iter().map(|(_, c)| c).sum(),
                hits: p.hits.load(Ordering::Relaxed),
                misses: p.misses.load(Ordering::Relaxed),
                bytes_in: p.bytes_in.load(Ordering::Relaxed),
                bytes_out: p.bytes_out.load(Ordering::Relaxed),
                statuses,
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
        upstream: state.replica.as_ref().map(|r| UpstreamFigures {
            fetched: r.fetched(),
            fetch_failures: r.fetch_failures(),
            uploaded: r.uploaded(),
            upload_failures: r.upload_failures(),
            queued: r.queued(),
        }),
        connections: m.connections.load(Ordering::Relaxed),
        reserved_bytes: state.reservations.held(),
        limit_trips: Limit::ALL
            .iter()
            .map(|l| (l.label(), m.trips(*l)))
            .collect(),
        protocols,
    }
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
            "GET/HEAD requests answered 200 or 206, by protocol.",
            (|p: &ProtocolFigures| p.hits) as fn(&ProtocolFigures) -> u64,
        ),
        (
            "misses_total",
            "GET/HEAD requests answered 404, by protocol.",
            |p| p.misses,
        ),
        (
            "received_bytes_total",
            "Request body bytes (Content-Length), by protocol.",
            |p| p.bytes_in,
        ),
        (
            "sent_bytes_total",
            "Response body bytes (Content-Length), by protocol.",
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
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.protocol,
            p.prefix.as_deref().unwrap_or(""),
            p.requests,
            p.hits,
            p.misses,
            ratio,
            format_size(p.bytes_in),
            format_size(p.bytes_out),
            statuses.join(", "),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=9>no requests yet</td></tr>");
    }
    format!(
        "<!doctype html>
<html><head><meta charset=utf-8><title>larder serve</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{background:#eee}}</style>
</head><body>
<h1>larder serve</h1>
<p>version {version} &middot; up {uptime} s{ro} &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/status.json\">/status.json</a></p>
<h2>Store</h2>
<table>
<tr><th>entries</th><td>{entries}</td></tr>
<tr><th>size</th><td>{bytes}</td></tr>
<tr><th>size budget</th><td>{max_bytes}</td></tr>
<tr><th>entry budget</th><td>{max_entries}</td></tr>
<tr><th>free disk</th><td>{free} (keep at least {min_free})</td></tr>
<tr><th>evicted</th><td>{evicted_entries} entries, {evicted_bytes} in {cleanups} clean-ups</td></tr>
<tr><th>writes refused for space</th><td>{oos}</td></tr>
<tr><th>entries refused by admission</th><td>{refused} ({refused_bytes})</td></tr>
{upstream}</table>
<h2>Requests</h2>
<table>
<tr><th>protocol</th><th>prefix</th><th>requests</th><th>hits</th><th>misses</th><th>hit ratio</th><th>in</th><th>out</th><th>statuses</th></tr>
{rows}
</table>
</body></html>
",
        version = s.version,
        uptime = s.uptime_seconds,
        ro = if s.read_only { " &middot; read-only" } else { "" },
        entries = s.store.entries,
        bytes = format_size(s.store.bytes),
        max_bytes = opt_size(s.store.max_bytes),
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
        upstream = s.upstream.as_ref().map_or_else(String::new, |u| format!(
            "<tr><th>upstream</th><td>{} fetched ({} failed), {} uploaded ({} failed attempts), {} queued</td></tr>\n",
            u.fetched, u.fetch_failures, u.uploaded, u.upload_failures, u.queued
        )),
    )
}

//! A bounded soak of `larder serve` (issue 16 item 8, "load held").
//!
//! [`run`] starts a `larder serve` on a free loopback port over a fresh directory, opens
//! [`Options::connections`] keep-alive connections and sends requests on each, one at a time,
//! until a fixed number of requests or a duration is used up:
//!
//! - over HTTP/1.1, GET, HEAD and PUT of the native protocol's blobs (`/v1/blobs`) and entries
//!   (`/v1/entries`), ccache (`/ccache`), Bazel's CAS and action cache (`/bazel/cas`,
//!   `/bazel/ac`) and WebDAV (`/dav`, as sccache uses it): a fifth writes, a tenth reads paths
//!   never written (each must be a 404), the rest read objects that are (or are being) written;
//! - over gRPC (one HTTP/2 connection each), REAPI `FindMissingBlobs`, `BatchReadBlobs` and
//!   `BatchUpdateBlobs` on the same CAS as `/bazel/cas`.
//!
//! Objects are 1 KiB to 1 MiB (mostly small), their bytes a function of the seed, so every
//! answer is checked: a read of an object stored before it was sent must return its bytes
//! exactly; any other status, a wrong body or a transport error is an error. Every second the
//! server's RSS, threads and descriptors are read from `/proc`; the [`Report`] compares the
//! RSS after the warm-up with the RSS at the end, and gives latency percentiles per protocol
//! and operation.

mod client;
mod http;
mod objects;
mod server;
mod stats;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use server::Sample;
pub use stats::Row;

use objects::{Protocol, Universe};
use stats::{RowKey, Tally};

/// Why a soak could not run (a soak that ran and found errors returns a [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server did not start.
    #[error("{0}")]
    Server(String),
    /// A client could not be built.
    #[error("client: {0}")]
    Client(String),
    /// The soak's objects could not be built.
    #[error("building the objects: {0}")]
    Objects(#[from] larder_core::Error),
}

impl Error {
    pub(crate) fn io(what: &str, source: std::io::Error) -> Error {
        Error::Io {
            what: what.to_owned(),
            source,
        }
    }
}

/// When the load stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// After this many requests (all connections together).
    Requests(u64),
    /// After this long.
    Duration(Duration),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `larder` binary to serve with.
    pub larder: PathBuf,
    /// Connections in all (HTTP/1.1 and gRPC).
    pub connections: usize,
    /// How many of [`Options::connections`] speak gRPC.
    pub grpc_connections: usize,
    /// When the load stops.
    pub bound: Bound,
    /// Objects per protocol (the same are written again and again; reads of them are hits
    /// once written).
    pub objects: usize,
    /// The largest object, bytes (the smallest is 1 KiB).
    pub max_size: usize,
    /// The share of the run (of its requests or its duration) that is warm-up: the RSS
    /// reached then is what the end is compared with.
    pub warmup: f64,
    /// RSS growth allowed after the warm-up, as a percentage of the RSS then ...
    pub rss_growth_percent: f64,
    /// ... or in bytes, whichever is larger.
    pub rss_growth_bytes: u64,
    /// Seeds the objects and each connection's choices.
    pub seed: u64,
    /// Where the server's directory goes (a temporary directory below it; default: the
    /// system's temporary directory).
    pub dir: Option<PathBuf>,
    /// More arguments for `larder serve`.
    pub server_args: Vec<String>,
    /// Print a line of progress every this often (`None`: quiet).
    pub progress: Option<Duration>,
}

impl Options {
    /// The full soak: 64 connections (8 of them gRPC), 5 minutes, 512 objects per protocol.
    pub fn new(larder: impl Into<PathBuf>) -> Options {
        Options {
            larder: larder.into(),
            connections: 64,
            grpc_connections: 8,
            bound: Bound::Duration(Duration::from_secs(300)),
            objects: 512,
            max_size: 1 << 20,
            warmup: 0.2,
            rss_growth_percent: 10.0,
            rss_growth_bytes: 8 << 20,
            seed: 16,
            dir: None,
            server_args: Vec::new(),
            progress: None,
        }
    }

    /// A short soak: 16 connections (2 gRPC), 10 seconds, 64 objects per protocol up to 256 KiB.
    pub fn quick(larder: impl Into<PathBuf>) -> Options {
        Options {
            connections: 16,
            grpc_connections: 2,
            bound: Bound::Duration(Duration::from_secs(10)),
            objects: 64,
            max_size: 256 << 10,
            ..Options::new(larder)
        }
    }
}

/// What a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Connections in all, and how many of them spoke gRPC.
    pub connections: usize,
    /// How many of them spoke gRPC.
    pub grpc_connections: usize,
    /// The requests the run was to send (`None` for a run bounded by time).
    pub planned: Option<u64>,
    /// Requests sent and answered (or failed).
    pub requests: u64,
    /// Requests answered wrongly.
    pub errors: u64,
    /// The first errors, described.
    pub first_errors: Vec<String>,
    /// Seconds the load ran.
    pub seconds: f64,
    /// Per protocol and operation.
    pub rows: Vec<Row>,
    /// All requests together.
    pub total: Row,
    /// Bytes of all objects together.
    pub object_bytes: u64,
    /// The server at the end of the warm-up.
    pub warm: Option<Sample>,
    /// The server when the load ended.
    pub end: Option<Sample>,
    /// The largest RSS after the warm-up.
    pub max_rss_after_warmup: u64,
    /// The RSS growth allowed after the warm-up, bytes.
    pub rss_bound: u64,
    /// Every sample, one a second.
    pub samples: Vec<Sample>,
    /// The 1-minute load average when the load started and when it ended.
    pub load_average: (f64, f64),
    /// TCP connections the HTTP/1.1 connections opened (as many as there are of them when
    /// the server kept every one open for the whole run).
    pub http_connections_opened: u64,
    /// The server's `larder_connections` gauge after the warm-up, lowest and highest (read
    /// every second; it counts the connection that asks too).
    pub server_connections: Option<(f64, f64)>,
    /// `larder_limit_trips_total`, all limits, at the end.
    pub limit_trips: Option<f64>,
    /// Warnings and errors in the server's log, and the first few lines of them.
    pub log_warnings: u64,
    /// Errors (and panics) in the server's log.
    pub log_errors: u64,
    /// The first warning or error lines.
    pub log_lines: Vec<String>,
    /// Why the server did not stop cleanly on SIGTERM, if it did not.
    pub stop_failure: Option<String>,
}

impl Report {
    /// RSS at the end less RSS after the warm-up, bytes.
    pub fn rss_growth(&self) -> Option<i64> {
        let (warm, end) = (self.warm?, self.end?);
        Some(end.rss as i64 - warm.rss as i64)
    }

    /// Every reason the soak failed: errors, requests not sent, RSS growth past the bound,
    /// errors in the server's log, a server that did not stop cleanly. Empty: it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.errors > 0 {
            f.push(format!("{} requests failed", self.errors));
        }
        if let Some(planned) = self.planned
            && self.requests != planned
        {
            f.push(format!("{} of {planned} requests completed", self.requests));
        }
        if let Some(growth) = self.rss_growth()
            && u64::try_from(growth).is_ok_and(|g| g > self.rss_bound)
        {
            f.push(format!(
                "the server's RSS grew by {} after the warm-up (bound {})",
                mib(growth),
                mib_u(self.rss_bound)
            ));
        }
        if self.log_errors > 0 {
            f.push(format!("{} errors in the server's log", self.log_errors));
        }
        if let Some(why) = &self.stop_failure {
            f.push(why.clone());
        }
        f
    }

    /// The report as text: a table per protocol and operation, then the server's figures.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let total = &self.total;
        let _ = writeln!(
            s,
            "larder soak: {} connections ({} HTTP/1.1, {} gRPC), {} requests in {:.1} s ({:.0} requests/s), {} up, {} down; objects {}",
            self.connections,
            self.connections - self.grpc_connections,
            self.grpc_connections,
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds.max(1e-9),
            mib(total.bytes_up as i64),
            mib(total.bytes_down as i64),
            mib(self.object_bytes as i64),
        );
        let _ = writeln!(
            s,
            "\n{:<14}{:<18}{:>10}{:>9}{:>8}{:>10}{:>10}{:>10}",
            "protocol", "op", "requests", "misses", "errors", "p50 ms", "p99 ms", "max ms"
        );
        for r in self.rows.iter().chain(std::iter::once(total)) {
            let _ = writeln!(
                s,
                "{:<14}{:<18}{:>10}{:>9}{:>8}{:>10.2}{:>10.2}{:>10.1}",
                r.protocol, r.op, r.requests, r.misses, r.errors, r.p50_ms, r.p99_ms, r.max_ms
            );
        }
        let _ = writeln!(s);
        match (self.warm, self.end) {
            (Some(w), Some(e)) => {
                let growth = self.rss_growth().unwrap_or(0);
                let _ = writeln!(
                    s,
                    "server RSS: {} after the warm-up (at {:.0} s), {} at the end ({:+.1} MiB, {:+.1}%; bound {}), at most {} after the warm-up",
                    mib(w.rss as i64),
                    w.at_s,
                    mib(e.rss as i64),
                    growth as f64 / 1048576.0,
                    100.0 * growth as f64 / w.rss.max(1) as f64,
                    mib_u(self.rss_bound),
                    mib(self.max_rss_after_warmup as i64),
                );
                let _ = writeln!(
                    s,
                    "server threads {} -> {}, open descriptors {} -> {}",
                    w.threads, e.threads, w.fds, e.fds
                );
            }
            _ => {
                let _ = writeln!(s, "server RSS: no sample after the warm-up (run too short)");
            }
        }
        let _ = writeln!(
            s,
            "load average (1 min): {:.2} at the start, {:.2} at the end",
            self.load_average.0, self.load_average.1
        );
        let http = self.connections - self.grpc_connections;
        let _ = writeln!(
            s,
            "HTTP/1.1 connections opened: {} for {http} connections ({} reopened)",
            self.http_connections_opened,
            self.http_connections_opened.saturating_sub(http as u64)
        );
        if let Some((low, high)) = self.server_connections {
            let _ = writeln!(
                s,
                "server connections after the warm-up (its larder_connections, with the one asking): {low} to {high}"
            );
        }
        if let Some(t) = self.limit_trips {
            let _ = writeln!(s, "server limit trips: {t}");
        }
        let _ = writeln!(
            s,
            "server log: {} warnings, {} errors",
            self.log_warnings, self.log_errors
        );
        for l in &self.log_lines {
            let _ = writeln!(s, "  {l}");
        }
        if !self.first_errors.is_empty() {
            let _ = writeln!(s, "first errors:");
            for e in &self.first_errors {
                let _ = writeln!(s, "  {e}");
            }
        }
        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(s, "result: passed");
        } else {
            let _ = writeln!(s, "result: FAILED: {}", failures.join("; "));
        }
        s
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn mib_u(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Errors past this many stop the load: the server is broken, and the report says how.
const MAX_ERRORS: u64 = 1000;
/// Error descriptions kept for the report.
const KEPT_ERRORS: usize = 20;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) seed: u64,
    pub(crate) universe: Universe,
    bound: Bound,
    started: Instant,
    issued: AtomicU64,
    completed: AtomicU64,
    error_count: AtomicU64,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    /// Whether another request may be sent (and count it).
    pub(crate) fn take_request(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.bound {
            Bound::Requests(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            Bound::Duration(d) => self.started.elapsed() < d,
        }
    }

    pub(crate) fn completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, what: String) {
        if self.error_count.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_ERRORS {
            self.stop.store(true, Ordering::Relaxed);
        }
        if let Ok(mut errors) = self.errors.lock()
            && errors.len() < KEPT_ERRORS
        {
            errors.push(what);
        }
    }

    /// Whether the load's bound is used up (its last requests may still be in flight).
    fn load_over(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || match self.bound {
                Bound::Requests(n) => self.issued.load(Ordering::Relaxed) >= n,
                Bound::Duration(d) => self.started.elapsed() >= d,
            }
    }

    /// Whether the warm-up is over.
    fn warmed_up(&self, warmup: f64) -> bool {
        match self.bound {
            Bound::Requests(n) => {
                self.completed.load(Ordering::Relaxed) as f64 >= warmup * n as f64
            }
            Bound::Duration(d) => self.started.elapsed().as_secs_f64() >= warmup * d.as_secs_f64(),
        }
    }
}

/// What the sampler saw.
#[derive(Debug, Default)]
struct Watch {
    samples: Vec<Sample>,
    /// The index in `samples` of the first sample after the warm-up.
    warm: Option<usize>,
    server_connections: Option<(f64, f64)>,
    server_gone: bool,
}

/// Run the soak `opts` describes.
///
/// # Errors
/// When the server cannot be started or the objects built; errors of the requests are in the
/// [`Report`] ([`Report::failures`]).
pub async fn run(opts: &Options) -> Result<Report, Error> {
    let dir = match &opts.dir {
        Some(d) => tempfile::Builder::new().prefix("larder-soak").tempdir_in(d),
        None => tempfile::Builder::new().prefix("larder-soak").tempdir(),
    }
    .map_err(|e| Error::io("creating the soak's directory", e))?;
    let (seed, count, max_size) = (opts.seed, opts.objects.max(1), opts.max_size);
    let universe = tokio::task::spawn_blocking(move || Universe::new(seed, count, 1024, max_size))
        .await
        .map_err(|e| Error::Client(format!("building the objects: {e}")))??;
    let object_bytes = universe.total_bytes();
    let served = server::Served::start(&opts.larder, dir.path(), &opts.server_args).await?;
    let pid = served.pid();
    let load_start = server::load_average();
    let shared = Arc::new(Shared {
        url: served.url.clone(),
        seed: opts.seed,
        universe,
        bound: opts.bound,
        started: Instant::now(),
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        error_count: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });

    let load_done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_server(
        Arc::clone(&shared),
        Arc::clone(&load_done),
        pid,
        opts.warmup,
        opts.progress,
    ));
    let grpc = opts.grpc_connections.min(opts.connections);
    let mut tasks = Vec::with_capacity(opts.connections);
    for index in 0..opts.connections {
        let shared = Arc::clone(&shared);
        tasks.push(if index < grpc {
            tokio::spawn(client::grpc_connection(shared, index))
        } else {
            tokio::spawn(client::http_connection(shared, index))
        });
    }
    let mut merged: HashMap<RowKey, Tally> = HashMap::new();
    let mut all = Tally::default();
    let mut http_connections_opened = 0;
    for (index, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok((tallies, opened))) => {
                if index >= grpc {
                    http_connections_opened += opened;
                }
                for (key, tally) in tallies {
                    all.merge(tally.clone());
                    merged.entry(key).or_default().merge(tally);
                }
            }
            Ok(Err(e)) => shared.error(format!("a connection failed: {e}")),
            Err(e) => shared.error(format!("a connection's task failed: {e}")),
        }
    }
    let seconds = shared.started.elapsed().as_secs_f64();
    load_done.store(true, Ordering::Relaxed);
    let end = server::sample(pid, seconds);
    let load_end = server::load_average();
    let mut watch = sampler.await.unwrap_or_default();
    if watch.server_gone {
        shared.error("the server exited during the load".into());
    }
    let limit_trips = scrape(&mut metrics_conn(&served.url))
        .await
        .map(|m| server::metric_sum(&m, "larder_limit_trips_total"));
    let log = served.log.clone();
    let stop_failure = served.stop().err();
    let (log_warnings, log_errors, log_lines) = server::log_problems(&log);

    if let Some(e) = end {
        watch.samples.push(e);
    }
    let warm = watch.warm.and_then(|i| watch.samples.get(i).copied());
    let max_rss_after_warmup = watch
        .warm
        .map(|i| watch.samples[i..].iter().map(|s| s.rss).max().unwrap_or(0))
        .unwrap_or(0);
    let rss_bound = warm.map_or(opts.rss_growth_bytes, |w| {
        ((w.rss as f64 * opts.rss_growth_percent / 100.0) as u64).max(opts.rss_growth_bytes)
    });
    let mut rows: Vec<Row> = merged
        .into_iter()
        .map(|(key, tally)| Row::new(key.protocol, key.op, tally))
        .collect();
    rows.sort_by_key(row_rank);
    let first_errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Report {
        connections: opts.connections,
        grpc_connections: grpc,
        planned: match opts.bound {
            Bound::Requests(n) => Some(n),
            Bound::Duration(_) => None,
        },
        requests: shared.completed.load(Ordering::Relaxed),
        errors: shared.error_count.load(Ordering::Relaxed),
        first_errors,
        seconds,
        rows,
        total: Row::new("all", "", all),
        object_bytes,
        warm,
        end,
        max_rss_after_warmup,
        rss_bound,
        samples: watch.samples,
        load_average: (load_start, load_end),
        http_connections_opened,
        server_connections: watch.server_connections,
        limit_trips,
        log_warnings,
        log_errors,
        log_lines,
        stop_failure,
    })
}

/// Rows in the order of [`Protocol::ALL`], then gRPC; GET, HEAD, PUT within each.
fn row_rank(r: &Row) -> (usize, usize, String) {
    let p = Protocol::ALL
        .iter()
        .position(|p| p.name() == r.protocol)
        .unwrap_or(Protocol::ALL.len());
    let o = ["GET", "HEAD", "PUT"]
        .iter()
        .position(|o| *o == r.op)
        .unwrap_or(3);
    (p, o, r.op.clone())
}

/// A connection for `/metrics`, beside the soak's.
fn metrics_conn(url: &str) -> http::Conn {
    http::Conn::new(url.trim_start_matches("http://"), Duration::from_secs(30))
}

/// `/metrics`.
async fn scrape(conn: &mut http::Conn) -> Option<String> {
    let answer = conn
        .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .ok()?;
    (answer.status == 200).then(|| String::from_utf8_lossy(&answer.body).into_owned())
}

/// Every second until the load is done: the server's RSS, threads and descriptors, after the
/// warm-up also its connection count; a line of progress when asked.
async fn sample_server(
    shared: Arc<Shared>,
    load_done: Arc<AtomicBool>,
    pid: u32,
    warmup: f64,
    progress: Option<Duration>,
) -> Watch {
    let mut watch = Watch::default();
    let mut metrics = metrics_conn(&shared.url);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_progress = Instant::now();
    while !load_done.load(Ordering::Relaxed) {
        tick.tick().await;
        if load_done.load(Ordering::Relaxed) {
            break;
        }
        let at = shared.started.elapsed().as_secs_f64();
        let Some(sample) = server::sample(pid, at) else {
            watch.server_gone = true;
            shared.stop.store(true, Ordering::Relaxed);
            break;
        };
        watch.samples.push(sample);
        if watch.warm.is_none() && shared.warmed_up(warmup) {
            watch.warm = Some(watch.samples.len() - 1);
        }
        if watch.warm.is_some()
            && !shared.load_over()
            && let Some(n) = scrape(&mut metrics)
                .await
                .and_then(|m| server::metric(&m, "larder_connections"))
            && !shared.load_over()
        {
            let (low, high) = watch.server_connections.unwrap_or((n, n));
            watch.server_connections = Some((low.min(n), high.max(n)));
        }
        if let Some(every) = progress
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            eprintln!(
                "larder-soak: {at:.0} s: {} requests, {} errors, server RSS {}, {} threads, {} descriptors, load {:.2}",
                shared.completed.load(Ordering::Relaxed),
                shared.error_count.load(Ordering::Relaxed),
                mib(sample.rss as i64),
                sample.threads,
                sample.fds,
                server::load_average(),
            );
        }
    }
    watch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(warm: u64, end: u64, bound: u64) -> Report {
        let sample = |rss| Sample {
            rss,
            ..Sample::default()
        };
        let total = Row::new("all", "", Tally::default());
        Report {
            connections: 1,
            grpc_connections: 0,
            planned: None,
            requests: 0,
            errors: 0,
            first_errors: Vec::new(),
            seconds: 1.0,
            rows: Vec::new(),
            total,
            object_bytes: 0,
            warm: Some(sample(warm)),
            end: Some(sample(end)),
            max_rss_after_warmup: end,
            rss_bound: bound,
            samples: Vec::new(),
            load_average: (0.0, 0.0),
            http_connections_opened: 1,
            server_connections: None,
            limit_trips: None,
            log_warnings: 0,
            log_errors: 0,
            log_lines: Vec::new(),
            stop_failure: None,
        }
    }

    #[test]
    fn rss_growth_fails_only_past_the_bound() {
        assert!(report(100 << 20, 108 << 20, 8 << 20).failures().is_empty());
        assert!(report(100 << 20, 90 << 20, 8 << 20).failures().is_empty());
        assert_eq!(report(100 << 20, 109 << 20, 8 << 20).failures().len(), 1);
        // An unbounded growth (u64::MAX) never fails.
        assert!(report(1, 1 << 40, u64::MAX).failures().is_empty());
        assert!(
            report(1, 1 << 40, u64::MAX)
                .render()
                .contains("result: passed")
        );
    }
}

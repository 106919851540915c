//! `larder serve`: the HTTP cache server over a local cache directory.
//!
//! The server itself lives in `larder-server`; this is its command line: where it stores, where
//! it listens, its limits, its pid file and logs, and the signals that stop it gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use larder_core::size::{parse_rate, parse_size};
use larder_server::{Access, Limits, Scrub, Server, ServerConfig, TlsFiles};

use super::{Ctx, EXIT_OK};
use crate::config::{Config, Source};
use crate::stores::StoreUrl;

/// The address `larder serve` listens on without `--listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7180";

const EXAMPLES: &str = "\
Examples:
  larder serve --dir /var/cache/larder --listen 0.0.0.0:7180
  larder serve --read-only --max-blob-size 2G --pid-file /run/larder.pid
  larder serve --max-size 200G --min-free 10G --max-free 20G
  larder serve --upstream http://central-cache:7180 --upload-workers 8
  larder serve --dir /var/cache/larder --store s3://team-cache/larder   # servers sharing a bucket
  larder serve --trust-require ed25519:BASE64   # refuse larder pushes that key did not sign

Clients:
  larder:  larder exec --store http://HOST:7180 ...          (native protocol, /v1)
  ccache:  CCACHE_REMOTE_STORAGE='http://HOST:7180/ccache|layout=subdirs'
  Bazel:   bazel build --remote_cache=http://HOST:7180/bazel ...
  sccache: SCCACHE_WEBDAV_ENDPOINT=http://HOST:7180/dav
  waf:     WAFCACHE=http://HOST:7180/waf/

With --auth-file, pushes need a credential: a bearer token (ccache: `|bearer-token=TOKEN`,
Bazel: --remote_header=Authorization=Bearer TOKEN) or a user (http://USER:PASSWORD@HOST/...).
File lines: `token TOKEN` (16+ characters), `user NAME PASSWORD`, `user NAME sha256:HEX`.

Budgets (--max-size, --max-entries, --min-free/--max-free) also come from larder.toml and
LARDER_MAX_SIZE etc., as for `larder trim`. A write the disk cannot take even after a clean-up
is answered 507 (reads go on); one over --max-blob-size is answered 413.
Figures: /status (HTML, or JSON at /status.json), /metrics (Prometheus), /healthz.

Blobs are verified when written; a read of a blob whose file is unchanged since the server
verified it (same inode, size, modification and change times) is sent without hashing, any
other read is verified and a damaged blob removed. The background scrub (--scrub-rate) reads
every blob back and removes damaged ones; `larder verify` does one such pass by hand.

The server stops gracefully on SIGTERM or SIGINT: it stops accepting connections, finishes the
requests in flight (uploads included) for up to --shutdown-timeout, and saves its index.
Only one server may serve a directory at a time. HTTP/1.1 and HTTP/2 (h2c with prior
knowledge, or ALPN h2 with TLS) share the port, and the limits below.";

/// Serve the cache over HTTP to larder, ccache and Bazel clients.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The cache directory to serve (default: the configured store, when it is a directory)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Address and port to listen on (port 0 picks a free one and prints it)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, env = "LARDER_LISTEN")]
    listen: SocketAddr,
    /// Refuse uploads larger than this (answered 413)
    #[arg(long, value_name = "SIZE")]
    max_blob_size: Option<String>,
    #[command(flatten)]
    budget: super::Budget,
    /// Seconds between clean-ups (writes that find the disk under --min-free clean up at once)
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    cleanup_interval: u64,
    /// Replicate this store (any store URL larder was built with): misses are fetched from it
    /// and kept, writes are queued on disk and uploaded to it. `--dir DIR --store URL` does the
    /// same with the global --store
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Concurrent uploads to --upstream (or to the store of --dir DIR --store URL)
    #[arg(long, value_name = "N", default_value_t = 4)]
    upload_workers: usize,
    /// Seconds between trims of the upstream store to its own budget (`?max-size=SIZE`,
    /// `?max-entries=N` on its URL; without one it is not trimmed). Servers sharing a bucket
    /// take turns through the bucket's trim lock
    #[arg(long, value_name = "SECONDS", default_value_t = 3600.0, value_parser = seconds)]
    upstream_trim_interval: f64,
    /// Require a credential from this file to push (lines `token TOKEN` or `user NAME PASSWORD`)
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// With --auth-file: require a credential to read too
    #[arg(long, requires = "auth_file")]
    no_anonymous_reads: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA in this PEM file
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve reads only: every upload or delete is answered 403
    #[arg(long)]
    read_only: bool,
    /// Write the server's pid to this file (removed on a clean stop)
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Append logs to this file instead of stderr
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,
    /// URL prefix of larder's native protocol
    #[arg(long, value_name = "PATH", default_value = "/v1")]
    native_prefix: String,
    /// URL prefix of ccache's HTTP remote storage
    #[arg(long, value_name = "PATH", default_value = "/ccache")]
    ccache_prefix: String,
    /// URL prefix of Bazel's HTTP cache
    #[arg(long, value_name = "PATH", default_value = "/bazel")]
    bazel_prefix: String,
    /// URL prefix of the WebDAV tree (sccache)
    #[arg(long, value_name = "PATH", default_value = "/dav")]
    dav_prefix: String,
    /// URL prefix of waf's wafcache netcache protocol
    #[arg(long, value_name = "PATH", default_value = "/waf")]
    waf_prefix: String,
    /// Append every lookup and store to this access trace, for `larder policy simulate`
    /// [env: LARDER_TRACE]
    #[arg(long, value_name = "FILE")]
    trace: Option<String>,
    /// Re-verify the stored blobs in the background, reading at most this much per second
    /// (50MiB/s), a pass an hour at most; `off` turns it off. Reads send a blob unchanged since
    /// it was verified without hashing it again: the scrub is what finds one damaged on disk
    #[arg(long, value_name = "RATE", default_value = "32MiB/s")]
    scrub_rate: String,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What clients can make the server hold; each limit that trips is counted in /metrics
/// (`larder_limit_trips_total{limit=...}`).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Connections served at once; one more is answered 503 and closed (lowered to fit the
    /// open-files limit)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (also the longest wait for the next
    /// request on an HTTP/1.1 connection)
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = seconds)]
    header_timeout: f64,
    /// Seconds a connection may stay open with no request and no traffic; a response the
    /// client stops reading for this long ends its connection
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = seconds)]
    idle_timeout: f64,
    /// Slowest upload accepted, in bytes per second on average after --upload-grace (0: no
    /// minimum); a slower one fails and releases its disk space
    #[arg(long, value_name = "SIZE", default_value = "1K")]
    min_upload_rate: String,
    /// Seconds an upload may take before --min-upload-rate applies
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds)]
    upload_grace: f64,
    /// Seconds requests in flight may take after SIGTERM before their connections are cut
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = seconds)]
    shutdown_timeout: f64,
    /// Disk space reserved up front (fallocate) for uploads that declare their length, in
    /// total over the uploads in flight; past it, uploads are received unreserved
    #[arg(long, value_name = "SIZE", default_value = "4G")]
    max_reserved: String,
    /// Largest native entry (larder's own protocol) accepted; larger ones are answered 413
    #[arg(long, value_name = "SIZE", default_value = "16M")]
    max_entry_size: String,
    /// Most outputs in a native entry accepted; more are answered 413
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_entry_outputs: usize,
    /// Multipart (waf) uploads: bytes allowed before the first boundary, and in one part's
    /// headers; more are answered 413
    #[arg(long, value_name = "SIZE", default_value = "16K")]
    max_multipart_header: String,
    /// Multipart (waf) uploads: most parts in one body; more are answered 413
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_multipart_parts: usize,
}

/// A number of seconds, positive and finite.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

impl LimitArgs {
    fn limits(&self) -> Result<Limits> {
        let size =
            |flag: &str, v: &str| parse_size(v).with_context(|| format!("bad --{flag} {v:?}"));
        let mut l = Limits::default();
        l.max_connections = self.max_connections.max(1);
        l.header_timeout = Duration::from_secs_f64(self.header_timeout);
        l.idle_timeout = Duration::from_secs_f64(self.idle_timeout);
        l.min_upload_rate = size("min-upload-rate", &self.min_upload_rate)?;
        l.upload_grace = Duration::from_secs_f64(self.upload_grace);
        l.shutdown_timeout = Duration::from_secs_f64(self.shutdown_timeout);
        l.max_reserved_bytes = size("max-reserved", &self.max_reserved)?;
        l.max_entry_bytes = size("max-entry-size", &self.max_entry_size)?;
        l.max_entry_outputs = self.max_entry_outputs.max(1);
        let header = size("max-multipart-header", &self.max_multipart_header)?;
        l.multipart_preamble_bytes = header;
        l.multipart_header_bytes = header;
        l.multipart_parts = self.max_multipart_parts.max(1);
        Ok(l)
    }
}

/// Run `larder serve` until SIGTERM or SIGINT.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    // Before anything can print the address: a SIGTERM from then on must stop us gracefully.
    let shutdown = shutdown_signal()?;
    let mut flags = args.budget.flags();
    if let Some(trace) = &args.trace {
        flags.push(("trace", trace.clone(), "--trace"));
    }
    let config = ctx.config(flags)?;
    let dir = match &args.dir {
        Some(d) => ctx.cwd.join(d),
        None => configured_dir(&config)?,
    };
    // `--dir DIR --store URL`: the directory is the disk tier in front of the store (as
    // --upstream URL); several servers on one bucket then serve what any of them stored.
    let upstream: Option<(String, &'static str)> = match (&args.upstream, &args.dir) {
        (Some(url), _) => Some((url.clone(), "--upstream")),
        (None, Some(_))
            if config.store.source != Source::Default
                && config
                    .store
                    .value
                    .iter()
                    .all(|s| s.contains("://") && !s.starts_with("file://")) =>
        {
            Some((config.store.value.join("\n"), "--store"))
        }
        _ => None,
    };
    let budget = config.trim_options();
    let max_blob_bytes = args
        .max_blob_size
        .as_deref()
        .map(|s| parse_size(s).with_context(|| format!("bad --max-blob-size {s:?}")))
        .transpose()?;
    let server_config = ServerConfig::new(&dir, args.listen)
        .with_max_blob_bytes(max_blob_bytes)
        .with_read_only(args.read_only)
        .with_native_prefix(args.native_prefix)
        .with_ccache_prefix(args.ccache_prefix)
        .with_bazel_prefix(args.bazel_prefix)
        .with_dav_prefix(args.dav_prefix)
        .with_waf_prefix(args.waf_prefix)
        .with_budget(budget)
        .with_cleanup_interval(Duration::from_secs(args.cleanup_interval.max(1)))
        .with_limits(args.limits.limits()?)
        .with_scrub(Scrub::at(
            parse_rate(&args.scrub_rate)
                .with_context(|| format!("bad --scrub-rate {:?}", args.scrub_rate))?,
            Scrub::default().interval,
        ));
    let server_config = match crate::policies::eviction_policy(&config) {
        Some(policy) => server_config.with_eviction(policy),
        None => server_config,
    };
    let server_config = match crate::policies::admission_policy(&config, &ctx.ui) {
        Some(policy) => server_config.with_admission(policy),
        None => server_config,
    };
    // Native pushes no trusted key signed are refused (403): `--trust-require KEY`, or
    // `[trust] require` / LARDER_TRUST_REQUIRE.
    let server_config = server_config.with_trust_require(config.trust_require.value.clone());
    let config = match config.trace_log()? {
        Some(trace) => server_config.with_trace(trace),
        None => server_config,
    };
    let config = match upstream {
        Some((url, from)) => {
            // The served store records the trace; the upstream's accesses would count twice.
            // The served directory is the local tier: no other local cache in front.
            let upstream_config = ctx.config(vec![
                ("store", url.clone(), from),
                ("trace", "none".to_owned(), from),
                ("no_local", "true".to_owned(), from),
                // Entries pass through as they are: not signed again, and checked by the
                // clients that read them.
                ("signing_key", "none".to_owned(), from),
                ("trust_require", "none".to_owned(), from),
            ])?;
            let opened = crate::stores::open(&upstream_config)
                .with_context(|| format!("cannot open the upstream store {url}"))?;
            if opened.local_dir.as_deref() == Some(dir.as_path()) {
                bail!("{from} names the served directory itself");
            }
            let budget = opened.budget.clone().unwrap_or_default();
            if budget.has_budget() && !opened.store.capability().trim {
                bail!("{from} {url}: this store cannot be trimmed, so it cannot have a budget");
            }
            config
                .with_upstream(opened.store, args.upload_workers)
                .with_upstream_budget(budget, Duration::from_secs_f64(args.upstream_trim_interval))
        }
        None => config,
    };
    let config = match &args.auth_file {
        Some(file) => {
            let mut access = Access::from_file(&ctx.cwd.join(file))?;
            access.anonymous_reads = !args.no_anonymous_reads;
            config.with_access(access)
        }
        None => {
            if !args.read_only && !args.listen.ip().is_loopback() && args.tls_client_ca.is_none() {
                tracing::warn!(
                    "anyone who can reach {} may push to this cache: pass --auth-file or --read-only",
                    args.listen
                );
            }
            config
        }
    };
    let config = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => config.with_tls(TlsFiles {
            cert: ctx.cwd.join(cert),
            key: ctx.cwd.join(key),
            client_ca: args.tls_client_ca.as_ref().map(|ca| ctx.cwd.join(ca)),
        }),
        _ => config,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = Server::bind(config).await?;
    let pid_file = match &args.pid_file {
        Some(p) => Some(PidFile::write(&ctx.cwd.join(p))?),
        None => None,
    };
    // The one line scripts wait for (the port matters when --listen asked for port 0).
    println!(
        "larder serve: serving {} on {scheme}://{}",
        dir.display(),
        server.local_addr()
    );
    let result = server.run(shutdown).await;
    drop(pid_file);
    result?;
    tracing::info!("stopped cleanly");
    Ok(EXIT_OK)
}

/// The configured store, which must be a local directory.
fn configured_dir(config: &Config) -> Result<PathBuf> {
    let first = config
        .store
        .value
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let url = StoreUrl::parse(first)?;
    if url.scheme != "file" || config.store.value.len() > 1 {
        bail!(
            "larder serve stores into a local directory, but the configured store is {} (from {}): pass --dir DIR",
            config.store.value.join(" "),
            config.store.source
        );
    }
    Ok(PathBuf::from(url.location))
}

/// Listen for SIGTERM and SIGINT now; the future completes on the first of them.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name}: finishing requests in flight, then stopping");
    })
}

/// A pid file, removed when dropped (the server's own directory lock is what refuses a
/// second instance; this file is for init systems and scripts).
#[derive(Debug)]
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> Result<PidFile> {
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

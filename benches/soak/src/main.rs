//! `larder-soak`: the soak of `larder serve` as a command (see the library's docs); exits 0
//! when it passed, 1 when it found a problem, 2 when it could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use larder_core::size::parse_size;
use larder_soak::{Bound, Options};

const ABOUT: &str = "\
A bounded soak of `larder serve` on loopback: starts the server on a free port over a fresh
directory, opens keep-alive connections and sends GET, HEAD and PUT requests over every
protocol it speaks (native blobs and entries, ccache, Bazel CAS and action cache, WebDAV;
gRPC FindMissingBlobs, BatchReadBlobs and BatchUpdateBlobs), checks every answer byte for
byte, and samples the server's RSS every second.

It prints requests, errors, p50/p99/max latency per protocol and operation, throughput, and
the server's RSS after the warm-up and at the end. Exit status: 0 when there was no error, every
planned request was answered and the RSS stayed within the bound; 1 otherwise; 2 when the soak
could not run.";

const AFTER: &str = "\
Examples:
  cargo build --release -p larder-cli && cargo run --release -p larder-soak
      the full soak: 64 connections, 5 minutes, the release server
  cargo run --release -p larder-soak -- --requests 500000 --json target/soak.json
  cargo run -p larder-soak -- --quick --larder target/debug/larder
      16 connections for 10 seconds (a check that runs in seconds)";

#[derive(Debug, Parser)]
#[command(name = "larder-soak", about = ABOUT, after_help = AFTER)]
struct Args {
    /// The `larder` binary to serve with [default: `larder` beside this program, e.g.
    /// target/release/larder]
    #[arg(long, value_name = "PATH")]
    larder: Option<PathBuf>,
    /// A short run: 16 connections (2 gRPC), 10 s, 64 objects per protocol up to 256 KiB
    /// (other options still apply on top)
    #[arg(long)]
    quick: bool,
    /// Keep-alive connections in all, HTTP/1.1 and gRPC [default: 64]
    #[arg(long, short = 'c', value_name = "N")]
    connections: Option<usize>,
    /// How many of the connections speak gRPC (HTTP/2) [default: one in eight]
    #[arg(long, value_name = "N")]
    grpc: Option<usize>,
    /// Stop after N requests in all (every one must be answered)
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "duration")]
    requests: Option<u64>,
    /// Stop after this long: 300, 300s, 5m, 1h [default: 5m]
    #[arg(long, short = 'd', value_name = "TIME", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Objects per protocol (written again and again; hits once written) [default: 512]
    #[arg(long, value_name = "N")]
    objects: Option<usize>,
    /// The largest object (the smallest is 1 KiB; most are under 8 KiB) [default: 1M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    max_size: Option<u64>,
    /// The share of the run that is warm-up (the RSS then is the baseline) [default: 0.2]
    #[arg(long, value_name = "FRACTION")]
    warmup: Option<f64>,
    /// RSS growth allowed after the warm-up, percent of the RSS then [default: 10]
    #[arg(long, value_name = "PERCENT")]
    rss_growth: Option<f64>,
    /// ... or this much, whichever is larger [default: 8M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    rss_growth_bytes: Option<u64>,
    /// Seeds the objects and the connections' choices [default: 16]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Put the server's directory below DIR [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// An argument for `larder serve` (repeat for more): --server-arg=--max-connections=100
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Also write the report, with every RSS sample, as JSON
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seconds between progress lines on stderr (0: none)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    progress: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (300, 300s, 5m, 1h)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn options(args: Args) -> Result<(Options, Option<PathBuf>)> {
    let larder = match args.larder {
        Some(p) => p,
        None => {
            let me = std::env::current_exe().context("finding this program")?;
            me.with_file_name("larder")
        }
    };
    if !larder.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p larder-cli) or pass --larder PATH",
            larder.display()
        );
    }
    let mut o = if args.quick {
        Options::quick(larder)
    } else {
        Options::new(larder)
    };
    if let Some(c) = args.connections {
        if c == 0 {
            bail!("--connections must be at least 1");
        }
        o.connections = c;
        o.grpc_connections = c / 8;
    }
    if let Some(g) = args.grpc {
        o.grpc_connections = g.min(o.connections);
    }
    if let Some(n) = args.requests {
        o.bound = Bound::Requests(n);
    }
    if let Some(d) = args.duration {
        o.bound = Bound::Duration(d);
    }
    if let Some(n) = args.objects {
        o.objects = n.max(1);
    }
    if let Some(m) = args.max_size {
        o.max_size = usize::try_from(m).context("--max-size")?.max(1024);
    }
    if let Some(w) = args.warmup {
        if !(0.0..1.0).contains(&w) {
            bail!("--warmup is a fraction of the run, from 0 to below 1");
        }
        o.warmup = w;
    }
    if let Some(p) = args.rss_growth {
        o.rss_growth_percent = p;
    }
    if let Some(b) = args.rss_growth_bytes {
        o.rss_growth_bytes = b;
    }
    if let Some(s) = args.seed {
        o.seed = s;
    }
    o.dir = args.dir;
    o.server_args = args.server_arg;
    o.progress = (args.progress > 0).then(|| Duration::from_secs(args.progress));
    Ok((o, args.json))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (opts, json) = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("larder-soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "larder-soak: {} with {} connections ({} gRPC), {}, {} objects per protocol up to {} bytes",
        opts.larder.display(),
        opts.connections,
        opts.grpc_connections,
        match opts.bound {
            Bound::Requests(n) => format!("{n} requests"),
            Bound::Duration(d) => format!("{} s", d.as_secs_f64()),
        },
        opts.objects,
        opts.max_size,
    );
    let report = match larder_soak::run(&opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("larder-soak: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render());
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&path, bytes));
        if let Err(e) = written {
            eprintln!("larder-soak: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn the_help_parses() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}

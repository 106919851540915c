//! `larder verify`: read every blob of a local cache directory back, hash it, and remove the
//! ones that do not match their digests (the pass `larder serve`'s background scrub makes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use larder_core::size::{format_size, parse_rate};
use larder_fs::{FsConfig, FsStore, ScrubProgress};

use super::{Ctx, EXIT_MISS, EXIT_OK, plural};
use crate::stores::StoreUrl;

const EXAMPLES: &str = "\
Examples:
  larder verify                         # the configured local cache, as fast as one core goes
  larder verify --dir /var/cache/larder --rate 50MiB/s
  larder verify --json | jq .damaged

Reads every stored blob to its end and checks it against its digest (BLAKE3); a damaged one is
removed, and the entries that name it then read as misses (their tasks run again). Safe while
other larder processes, or `larder serve`, use the directory. Exit status: 0 all good, 1 damaged
or unreadable blobs found (damaged ones removed), 2 an error.";

/// Re-verify every blob of the local cache and remove the damaged ones
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The cache directory (default: the configured store's local directory)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Read at most this many bytes per second (50MiB/s, 1G); default: as fast as it goes
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Print one JSON object instead of a summary line
    #[arg(long)]
    json: bool,
}

/// Run `larder verify`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let rate = match &args.rate {
        Some(r) => parse_rate(r).with_context(|| format!("bad --rate {r:?}"))?,
        None => None,
    };
    let dir = match &args.dir {
        Some(d) => ctx.cwd.join(d),
        None => configured_dir(ctx)?,
    };
    if !dir.join("blobs").is_dir() {
        bail!(
            "{} is not a larder cache directory (no blobs/ in it)",
            dir.display()
        );
    }
    let store = FsStore::open(&dir, FsConfig::default())
        .with_context(|| format!("cannot open the cache in {}", dir.display()))?;
    let progress = ScrubProgress::new();
    let bar = ctx.ui.bar(0, "verifying", true);
    let ticker = {
        let (bar, progress) = (bar.clone(), Arc::clone(&progress));
        tokio::spawn(async move {
            loop {
                let s = progress.status();
                bar.set_length(s.pass_bytes_total);
                bar.set_position(s.pass_bytes_done);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let report = store.scrub(rate, Arc::clone(&progress)).await;
    ticker.abort();
    bar.finish_and_clear();
    super::flush(&store, &ctx.ui).await;
    let report = report.with_context(|| format!("cannot verify {}", dir.display()))?;
    let damaged: Vec<String> = report.corrupt.iter().map(|d| d.to_hex()).collect();
    let seconds = report.elapsed.as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "dir": dir.display().to_string(),
            "good": report.good,
            "damaged": damaged,
            "unreadable": report.unreadable,
            "bytes": report.bytes,
            "seconds": seconds,
        });
        super::print_stdout(format!("{v}\n").as_bytes())?;
    } else {
        for d in &damaged {
            println!("damaged, removed: blob {d}");
        }
        let blobs = report.good + report.corrupt.len() as u64 + report.unreadable;
        println!(
            "verified {} ({}) in {seconds:.1} s: {} good, {} damaged and removed, {} unreadable",
            plural(blobs, "blob"),
            format_size(report.bytes),
            report.good,
            damaged.len(),
            report.unreadable,
        );
    }
    Ok(if !damaged.is_empty() || report.unreadable > 0 {
        EXIT_MISS
    } else {
        EXIT_OK
    })
}

/// The configured store's local directory: the store itself when it is a path, else the
/// local cache in front of a remote one.
fn configured_dir(ctx: &Ctx) -> Result<PathBuf> {
    let config = ctx.config(Vec::new())?;
    if let [only] = &config.store.value[..]
        && let Ok(url) = StoreUrl::parse(only)
        && url.scheme == "file"
    {
        return Ok(PathBuf::from(url.location));
    }
    match ctx.open(&config)?.local_dir {
        Some(dir) => Ok(dir),
        None => {
            bail!(
                "the configured store ({}) has no local directory: pass --dir DIR",
                config.store.value.join(" ")
            )
        }
    }
}

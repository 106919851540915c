//! `larder stats`: how full and how useful the cache is.

use anyhow::{Context, Result};
use larder_core::size::format_size;

use super::{Ctx, EXIT_OK};

const EXAMPLES: &str = "\
Examples:
  larder stats
  larder stats --json | jq .hit_ratio

Hits and misses count every lookup since the cache was created (by exec, get and other clients).";

/// Show entries, size, hits, misses, hit ratio, and bytes and time saved.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

/// Run `larder stats`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let config = ctx.config(Vec::new())?;
    let opened = ctx.open(&config)?;
    let store = opened.store;
    let s = store
        .stats()
        .await
        .with_context(|| format!("cannot read statistics of {store}"))?;
    let seconds_saved = s.ms_saved as f64 / 1000.0;
    if args.json {
        let v = serde_json::json!({
            "store": store.to_string(),
            "entries": s.entries,
            "bytes": s.bytes,
            "hits": s.hits,
            "misses": s.misses,
            "hit_ratio": s.hit_ratio(),
            "bytes_saved": s.bytes_saved,
            "seconds_saved": seconds_saved,
        });
        println!("{v:#}");
    } else {
        println!("store        {store}");
        println!("entries      {}", s.entries);
        println!("size         {}", format_size(s.bytes));
        println!("hits         {}", s.hits);
        println!("misses       {}", s.misses);
        println!("hit ratio    {:.1} %", s.hit_ratio() * 100.0);
        println!("bytes saved  {}", format_size(s.bytes_saved));
        println!("time saved   {seconds_saved:.1} s");
    }
    Ok(EXIT_OK)
}

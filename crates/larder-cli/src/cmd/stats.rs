//! `larder stats`: how full and how useful the cache is.

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_core::Store;
use larder_core::size::format_size;

use super::{Ctx, EXIT_OK};

const EXAMPLES: &str = "\
Examples:
  larder stats
  larder stats --json | jq .hit_ratio

Hits and misses count every lookup since the cache was created (by exec, get and other clients).
With several stores (tiers), each tier's own figures follow the first's: a hit counts in the
tier that answered it (a local hit never reaches the remote).";

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
    let stores: Vec<Arc<dyn Store>> = match &opened.tiers {
        Some(tiered) => tiered.tiers().iter().map(|t| t.store().clone()).collect(),
        None => vec![opened.store.clone()],
    };
    let mut json_tiers = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let s = match store.stats().await {
            Ok(s) => s,
            // A slower tier that does not answer is shown as such; the others still are.
            Err(e) if i > 0 => {
                let why = format!("{e:#}");
                if args.json {
                    json_tiers
                        .push(serde_json::json!({ "store": store.to_string(), "error": why }));
                } else {
                    println!(
                        "\ntier         {}\nstore        {store}\nunavailable  {why}",
                        i + 1
                    );
                }
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read statistics of {store}"));
            }
        };
        let seconds_saved = s.ms_saved as f64 / 1000.0;
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
        if args.json {
            json_tiers.push(v);
            continue;
        }
        if i > 0 {
            println!();
        }
        if stores.len() > 1 {
            println!("tier         {}", i + 1);
        }
        println!("store        {store}");
        println!("entries      {}", s.entries);
        println!("size         {}", format_size(s.bytes));
        println!("hits         {}", s.hits);
        println!("misses       {}", s.misses);
        println!("hit ratio    {:.1} %", s.hit_ratio() * 100.0);
        println!("bytes saved  {}", format_size(s.bytes_saved));
        println!("time saved   {seconds_saved:.1} s");
    }
    if args.json {
        // One store: its object, as before; tiers: the first tier's figures plus `tiers`.
        let mut v = json_tiers.first().cloned().unwrap_or_default();
        if json_tiers.len() > 1
            && let Some(obj) = v.as_object_mut()
        {
            obj.insert("tiers".into(), serde_json::Value::from(json_tiers));
        }
        println!("{v:#}");
    }
    Ok(EXIT_OK)
}

//! `larder trim`: evict entries until the cache is within its budgets.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};
use larder_core::size::format_size;
use larder_core::{EntryMeta, Store, TrimReport};

use super::{Ctx, EXIT_ERROR, EXIT_OK, flush, plural};
use crate::progress::Ui;

const EXAMPLES: &str = "\
Examples:
  larder trim --max-size 10G
  larder trim --max-entries 100000 --dry-run
  larder trim --min-free 5G --max-free 20G     # when free disk < 5G, evict until it is 20G

Without flags, the budgets come from larder.toml (max_size, max_entries, min_free, max_free),
LARDER_MAX_SIZE etc., or WAFCACHE_EVICT_MAX_BYTES / WAFCACHE_TRIM_MAX_FOLDER. Entries go in
least-recently-used order, or as the WebAssembly policy in `[policy] eviction` (larder.toml) or
LARDER_EVICTION_POLICY says; --dry-run lists the entries it would evict, in order. Only one
process trims a cache at a time: without --wait, a trim that finds another one running does
nothing.

With tiers (several --store, or a remote store behind the local cache), these budgets are the
first tier's; a slower tier is trimmed only to a budget on its own URL, e.g.
  larder trim --store ~/.cache/larder --store 's3://team-cache/larder?max-size=500G&max-entries=2000000'
and each tier trimmed gets its own line.";

/// Evict entries (least recently used first, or in the configured eviction policy's order)
/// until the cache is within its budgets.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    #[command(flatten)]
    budget: super::Budget,
    /// Report what would be evicted, and evict nothing
    #[arg(long)]
    dry_run: bool,
    /// Wait for another process's trim to finish instead of skipping
    #[arg(long)]
    wait: bool,
}

/// Run `larder trim`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let config = ctx.config(args.budget.flags())?;
    let opened = ctx.open(&config)?;
    let tier_budgets = opened.budget.is_some()
        || opened
            .tiers
            .as_ref()
            .is_some_and(|t| t.tiers().iter().any(|t| t.budget().is_some()));
    if !config.has_budget() && !tier_budgets {
        bail!(
            "no budget to trim to: pass --max-size, --max-entries or --min-free, or set max_size, max_entries or min_free in larder.toml (or LARDER_MAX_SIZE, LARDER_MAX_ENTRIES, LARDER_MIN_FREE); a remote store's own budget goes on its URL (s3://bucket/prefix?max-size=500G)"
        );
    }
    let store = opened.store;
    let mut opts = config.trim_options();
    opts.dry_run = args.dry_run;
    opts.wait_for_lock = args.wait;
    if let Some(policy) = &config.eviction_policy.value {
        ctx.ui.note(format_args!(
            "evicting with the policy {} (from {})",
            policy.display(),
            config.eviction_policy.source
        ));
    }
    let bar = ctx.ui.bar(0, "trimming", false);
    let progress = Some(Ui::progress_fn(&bar));
    // One row per store trimmed: each tier with a budget (its own, or the configured one for
    // the first), or the one store.
    let rows: Vec<(String, Result<TrimReport>)> = match &opened.tiers {
        Some(tiered) => tiered
            .trim_tiers(&opts, progress)
            .await
            .into_iter()
            .map(|t| {
                let result = t.result.with_context(|| format!("cannot trim {}", t.name));
                (t.name, result)
            })
            .collect(),
        None => {
            if !store.capability().trim {
                bar.finish_and_clear();
                bail!("{store} cannot be trimmed");
            }
            let mut budget = opened.budget.clone().unwrap_or_else(|| opts.clone());
            budget.dry_run = opts.dry_run;
            budget.wait_for_lock = opts.wait_for_lock;
            let report = store
                .trim(&budget, progress)
                .await
                .with_context(|| format!("cannot trim {store}"));
            vec![(store.to_string(), report)]
        }
    };
    bar.finish_and_clear();
    flush(store.as_ref(), &ctx.ui).await;
    let named = rows.len() > 1;
    let mut failed = None;
    for (name, report) in rows {
        let prefix = if named {
            format!("{name}: ")
        } else {
            String::new()
        };
        let report = match report {
            Ok(r) => r,
            Err(e) if named => {
                ctx.ui.warn(format_args!("{e:#}"));
                failed.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if report.skipped_locked {
            ctx.ui.note(format_args!("{prefix}another larder process is trimming this cache; nothing done (pass --wait to wait for it)"));
            continue;
        }
        if report.dry_run && !report.victims.is_empty() {
            print_victims(store.as_ref(), &report.victims).await;
        }
        let verb = if report.dry_run {
            "would evict"
        } else {
            "evicted"
        };
        println!(
            "{prefix}{verb} {} ({}); {} ({}) {}",
            plural(report.evicted_entries, "entry"),
            format_size(report.evicted_bytes),
            plural(report.remaining_entries, "entry"),
            format_size(report.remaining_bytes),
            if report.dry_run {
                "would remain"
            } else {
                "remain"
            }
        );
    }
    Ok(if failed.is_some() {
        EXIT_ERROR
    } else {
        EXIT_OK
    })
}

/// One line per entry a dry run would evict, in eviction order: storage name, size, hits,
/// recompute cost and last use (from the store's listing; just the name if it is gone).
async fn print_victims(store: &dyn Store, victims: &[String]) {
    use futures::StreamExt;
    let wanted: HashSet<&str> = victims.iter().map(String::as_str).collect();
    let mut meta: HashMap<String, EntryMeta> = HashMap::new();
    let mut listing = store.list();
    while let Some(item) = listing.next().await {
        // A listing error only costs the details.
        let Ok(m) = item else { break };
        if wanted.contains(m.name.as_str()) {
            meta.insert(m.name.clone(), m);
        }
    }
    let now = larder_core::entry::now_ms();
    println!("would evict, in order:");
    for name in victims {
        match meta.get(name) {
            Some(m) => println!(
                "  {name}  {:>10}  {:>5} hits  cost {:>8.2} s  last used {} ago",
                format_size(m.size),
                m.hits,
                m.cost_ms as f64 / 1000.0,
                ago(now.saturating_sub(m.last_access_ms))
            ),
            None => println!("  {name}"),
        }
    }
}

/// `42 s`, `3 min`, `5 h`, `2 d`.
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

//! `larder trim`: evict entries until the cache is within its budgets.

use anyhow::{Context, Result, bail};
use larder_core::size::format_size;

use super::{Ctx, EXIT_OK, budget_flags, flush, plural};
use crate::progress::Ui;

const EXAMPLES: &str = "\
Examples:
  larder trim --max-size 10G
  larder trim --max-entries 100000 --dry-run
  larder trim --min-free 5G --max-free 20G     # when free disk < 5G, evict until it is 20G

Without flags, the budgets come from larder.toml (max_size, max_entries, min_free, max_free),
LARDER_MAX_SIZE etc., or WAFCACHE_EVICT_MAX_BYTES / WAFCACHE_TRIM_MAX_FOLDER. Entries go in
least-recently-used order, or as the WebAssembly policy in `[policy] eviction` (larder.toml) or
LARDER_EVICTION_POLICY says. Only one process trims a cache at a time: without --wait, a trim
that finds another one running does nothing.";

/// Evict least recently used entries until the cache is within its budgets.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Keep the cache at or under this size (10G, 512MiB)
    #[arg(long, value_name = "SIZE")]
    max_size: Option<String>,
    /// Keep at most this many entries
    #[arg(long, value_name = "N")]
    max_entries: Option<String>,
    /// When the disk has less free space than this, evict ...
    #[arg(long, value_name = "SIZE")]
    min_free: Option<String>,
    /// ... until it has this much (default: --min-free)
    #[arg(long, value_name = "SIZE")]
    max_free: Option<String>,
    /// Report what would be evicted, and evict nothing
    #[arg(long)]
    dry_run: bool,
    /// Wait for another process's trim to finish instead of skipping
    #[arg(long)]
    wait: bool,
}

/// Run `larder trim`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let config = ctx.config(budget_flags(
        &args.max_size,
        &args.max_entries,
        &args.min_free,
        &args.max_free,
    ))?;
    if !config.has_budget() {
        bail!(
            "no budget to trim to: pass --max-size, --max-entries or --min-free, or set max_size, max_entries or min_free in larder.toml (or LARDER_MAX_SIZE, LARDER_MAX_ENTRIES, LARDER_MIN_FREE)"
        );
    }
    let opened = ctx.open(&config)?;
    let store = opened.store;
    if !store.capability().trim {
        bail!("{store} cannot be trimmed");
    }
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
    let report = store
        .trim(&opts, Some(Ui::progress_fn(&bar)))
        .await
        .with_context(|| format!("cannot trim {store}"));
    bar.finish_and_clear();
    flush(store.as_ref(), &ctx.ui).await;
    let report = report?;
    if report.skipped_locked {
        ctx.ui.note("another larder process is trimming this cache; nothing done (pass --wait to wait for it)");
        return Ok(EXIT_OK);
    }
    let verb = if report.dry_run {
        "would evict"
    } else {
        "evicted"
    };
    println!(
        "{verb} {} ({}); {} ({}) {}",
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
    Ok(EXIT_OK)
}

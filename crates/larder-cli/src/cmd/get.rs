//! `larder get KEY [FILE...]`: restore files stored by `larder put` (or any entry).

use anyhow::{Context, Result};
use larder_client::{Cache, Declared, Lookup, Restore};
use larder_core::Key;
use larder_core::size::format_size;

use super::{Ctx, EXIT_MISS, EXIT_OK, flush, plural};
use crate::paths::workdir_relative;

const EXAMPLES: &str = "\
Examples:
  larder get deps-0123456789abcdef            # restore everything the entry holds
  larder get nightly/docs site/               # only `site` (and what is below it)
  larder get deps-0123456789abcdef || cargo build --release

Exit status: 0 hit (every file restored), 1 miss (no such entry, one of the FILEs is not in it,
or its data is gone), 2 error.";

/// Restore the files stored under KEY into the working directory.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The key given to `larder put`
    key: String,
    /// Which outputs to restore (default: all); each must be in the entry
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

/// Run `larder get`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let key = Key::new(args.key.as_str())?;
    let config = ctx.config(Vec::new())?;
    let mut wanted: Vec<String> = Vec::new();
    for f in &args.files {
        wanted.push(workdir_relative(&ctx.cwd, f, "FILE")?);
    }
    let opened = ctx.open(&config)?;
    let cache = ctx.cache(opened.store, &config).with_progress(&ctx.ui);
    let code = get(&cache, &key, &wanted, ctx).await;
    flush(cache.store().as_ref(), &ctx.ui).await;
    code
}

async fn get(cache: &Cache<'_>, key: &Key, wanted: &[String], ctx: &Ctx) -> Result<u8> {
    let store = cache.store();
    let entry = match cache
        .lookup(key, wanted)
        .await
        .map_err(larder_client::Error::into_inner)
        .with_context(|| format!("cannot look up {key} in {store}"))?
    {
        Lookup::Found(entry) => *entry,
        Lookup::Miss => {
            ctx.ui.status(format_args!("miss {key}"));
            return Ok(EXIT_MISS);
        }
        Lookup::Absent(absent) => {
            ctx.ui
                .note(format_args!("miss {key}: the entry has no output {absent}"));
            return Ok(EXIT_MISS);
        }
    };
    // Without FILEs the user asked for the whole entry by its key; with them, only those (and
    // what is below them) may be written.
    let declared = if wanted.is_empty() {
        Declared::Entry
    } else {
        Declared::Only(wanted)
    };
    let restored = cache
        .restore(key, &entry, &ctx.cwd, declared)
        .await
        .map_err(larder_client::Error::into_inner)
        .with_context(|| format!("cannot restore {key}"))?;
    match restored {
        Restore::Restored => {
            ctx.ui.status(format_args!(
                "hit {key}: restored {} ({})",
                plural(entry.outputs.len() as u64, "output"),
                format_size(entry.total_size())
            ));
            Ok(EXIT_OK)
        }
        Restore::Missing => {
            ctx.ui.note(format_args!(
                "miss {key}: its stored data is missing or corrupt"
            ));
            Ok(EXIT_MISS)
        }
        // The warning naming the key and the output came from the restore, which removed the
        // entry.
        Restore::Poisoned { .. } => Ok(EXIT_MISS),
    }
}

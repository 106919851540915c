//! `larder get KEY [FILE...]`: restore files stored by `larder put` (or any entry).

use anyhow::{Context, Result};
use larder_core::artifacts::{Restore, RestoreOptions, discard_poisoned, restore_outputs};
use larder_core::size::format_size;
use larder_core::{Entry, Key, StoreExt};

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
    let store = opened.store;
    let code = get(&store, &key, &wanted, ctx, &config).await;
    flush(store.as_ref(), &ctx.ui).await;
    code
}

async fn get(
    store: &std::sync::Arc<dyn larder_core::Store>,
    key: &Key,
    wanted: &[String],
    ctx: &Ctx,
    config: &crate::config::Config,
) -> Result<u8> {
    let entry = match lookup(store.as_ref(), key, wanted)
        .await
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
    let blob_bytes: u64 = entry
        .contents()
        .filter(|c| c.inline.is_none())
        .map(|c| c.size)
        .sum();
    // Without FILEs the user asked for the whole entry by its key; with them, only those (and
    // what is below them) may be written.
    let opts = if wanted.is_empty() {
        RestoreOptions::whole_entry()
    } else {
        RestoreOptions::declared(wanted)
    }
    .placement(config.link.value)
    .allow_external_symlinks(config.allow_external_symlinks.value);
    let (transfer, bar) = ctx.ui.transfer(store.clone(), blob_bytes, "restoring");
    let restored = restore_outputs(transfer.as_ref(), &entry, &ctx.cwd, &opts)
        .await
        .with_context(|| format!("cannot restore {key}"));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match restored? {
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
        Restore::Poisoned { path, reason } => {
            // The warning naming the key and the output comes from `discard_poisoned`.
            discard_poisoned(store.as_ref(), key, &path, reason).await;
            Ok(EXIT_MISS)
        }
    }
}

/// What [`lookup`] found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// No entry under the key.
    Miss,
    /// The entry exists but does not hold this wanted output.
    Absent(String),
    /// The entry, cut down to the wanted outputs, without its captured streams (boxed: an
    /// entry is large beside the other variants).
    Found(Box<Entry>),
}

/// Look `key` up and select the `wanted` outputs (all when empty). Captured streams are
/// dropped: `get` restores files only.
pub(crate) async fn lookup(
    store: &dyn larder_core::Store,
    key: &Key,
    wanted: &[String],
) -> larder_core::Result<Lookup> {
    let Some(mut entry) = store.get_entry(key).await? else {
        return Ok(Lookup::Miss);
    };
    if !wanted.is_empty() {
        match select(&entry, wanted) {
            Ok(outputs) => entry.outputs = outputs,
            Err(absent) => return Ok(Lookup::Absent(absent)),
        }
    }
    entry.stdout = None;
    entry.stderr = None;
    Ok(Lookup::Found(Box::new(entry)))
}

/// The outputs `wanted` names (a directory brings what is below it), or the first name the
/// entry does not hold.
fn select(entry: &Entry, wanted: &[String]) -> Result<Vec<larder_core::Output>, String> {
    for w in wanted {
        if !entry.outputs.iter().any(|o| &o.path == w) {
            return Err(w.clone());
        }
    }
    Ok(entry
        .outputs
        .iter()
        .filter(|o| {
            wanted.iter().any(|w| {
                o.path == *w
                    || o.path
                        .strip_prefix(w.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        })
        .cloned()
        .collect())
}

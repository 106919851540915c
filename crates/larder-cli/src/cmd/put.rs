//! `larder put KEY FILE...`: store files under a key of your choosing.

use anyhow::{Context, Result, bail};
use std::path::Path;

use larder_core::admission::AdmissionCandidate;
use larder_core::artifacts::{PendingBlob, collect_outputs, store_outputs};
use larder_core::size::format_size;
use larder_core::{Entry, Key};

use super::{Ctx, EXIT_OK, flush, plural};
use crate::paths::workdir_relative;

const EXAMPLES: &str = "\
Examples:
  larder put deps-$(sha256sum Cargo.lock | cut -c1-16) target/release/deps
  larder put nightly/docs site/ README.html

Files and directories are named relative to the working directory, and restored to the same
names by `larder get`. Exit status: 0 stored (or refused by the admission policy in
`[policy] admission`, which -v reports), 2 error.";

/// Store files and directories under KEY (replacing what KEY held).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The key: letters, digits, `._-+=:@,`, and `/` between segments (at most 512 bytes)
    key: String,
    /// Files or directories to store, inside the working directory
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
}

/// Run `larder put`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let key = Key::new(args.key.as_str())?;
    let config = ctx.config(Vec::new())?;
    if config.no_push.value {
        bail!(
            "storing is disabled by no_push (from {})",
            config.no_push.source
        );
    }
    let mut names: Vec<String> = Vec::new();
    for f in &args.files {
        let name = workdir_relative(&ctx.cwd, f, "FILE")?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let opened = ctx.open(&config)?;
    let store = opened.store;
    let inline_limit = config.inline_limit.value;
    let (entry, blobs) =
        tokio::task::block_in_place(|| collect_entry(&ctx.cwd, &key, &names, inline_limit, "put"))
            .context("reading the files")?;
    let admission = crate::policies::Admission::load(&config, &ctx.ui);
    if let Some(policy) = admission.refused_by(AdmissionCandidate::of(&entry)) {
        ctx.ui.status(format_args!(
            "not stored {key}: refused by the admission policy {policy}"
        ));
        return Ok(EXIT_OK);
    }
    let blob_bytes: u64 = blobs.iter().map(|b| b.size).sum();
    let (transfer, bar) = ctx.ui.transfer(store.clone(), blob_bytes, "storing");
    let result = store_outputs(transfer.as_ref(), &key, &entry, &blobs)
        .await
        .with_context(|| format!("cannot store {key} in {store}"));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    flush(store.as_ref(), &ctx.ui).await;
    result?;
    ctx.ui.status(format_args!(
        "stored {key}: {} ({})",
        plural(entry.outputs.len() as u64, "output"),
        format_size(entry.total_size())
    ));
    Ok(EXIT_OK)
}

/// Read the files and directories `names` (relative to `root`) into an entry for `key` made by
/// `producer`, with the blobs to upload before it. A name listed twice (or inside a listed
/// directory and also named) is kept once. Blocking: call it inside `block_in_place`.
pub(crate) fn collect_entry(
    root: &Path,
    key: &Key,
    names: &[String],
    inline_limit: u64,
    producer: &str,
) -> larder_core::Result<(Entry, Vec<PendingBlob>)> {
    let mut collected = collect_outputs(root, names, inline_limit)?;
    let mut seen = std::collections::HashSet::new();
    collected.outputs.retain(|o| seen.insert(o.path.clone()));
    let mut entry = Entry::new(key.as_str(), producer);
    entry.outputs = collected.outputs;
    Ok((entry, collected.blobs))
}

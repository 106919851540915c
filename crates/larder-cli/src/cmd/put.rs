//! `larder put KEY FILE...`: store files under a key of your choosing.

use anyhow::{Context, Result, bail};
use larder_client::{Stored, Streams};
use larder_core::Key;
use larder_core::size::format_size;

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
    let mut cache = ctx.cache(opened.store, &config).with_progress(&ctx.ui);
    let prepared = tokio::task::block_in_place(|| cache.collect(&ctx.cwd, &key, &names, "put"))
        .map_err(larder_client::Error::into_inner)
        .context("reading the files")?;
    cache.set_admission(crate::policies::admission_policy(&config, &ctx.ui));
    let result = cache.put(&key, prepared, Streams::default()).await;
    let stored = match result {
        Ok(Stored::Refused(policy)) => {
            ctx.ui.status(format_args!(
                "not stored {key}: refused by the admission policy {policy}"
            ));
            return Ok(EXIT_OK);
        }
        Ok(Stored::Now { outputs, bytes }) => Ok((outputs, bytes)),
        Err(e) => Err(e.into_inner()),
    };
    let store = cache.store();
    flush(store.as_ref(), &ctx.ui).await;
    let (outputs, bytes) = stored.with_context(|| format!("cannot store {key} in {store}"))?;
    ctx.ui.status(format_args!(
        "stored {key}: {} ({})",
        plural(outputs as u64, "output"),
        format_size(bytes)
    ));
    Ok(EXIT_OK)
}

//! The subcommands, and what they share: the working directory, configuration and store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use larder_client::Cache;
use larder_core::Store;

use crate::config::{Config, Inputs};
use crate::progress::Ui;
use crate::stores::{self, Opened};

pub(crate) mod ccache_helper;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod exec;
pub(crate) mod get;
pub(crate) mod key;
pub(crate) mod man;
#[cfg(feature = "policy")]
pub(crate) mod policy;
pub(crate) mod put;
#[cfg(feature = "server")]
pub(crate) mod serve;
pub(crate) mod stats;
pub(crate) mod trim;
#[cfg(feature = "fs")]
pub(crate) mod verify;
pub(crate) mod worker;

/// Exit code: success, or a hit.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: a miss (`get`).
pub(crate) const EXIT_MISS: u8 = 1;
/// Exit code: an error.
pub(crate) const EXIT_ERROR: u8 = 2;

/// Write `bytes` to stdout. A reader that went away (`larder man | head`) is not an error: the
/// rest is not wanted.
pub(crate) fn print_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result.context("cannot write to stdout")?),
    }
}

/// What every subcommand gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Stderr output.
    pub(crate) ui: Ui,
    /// The working directory.
    pub(crate) cwd: PathBuf,
    /// The global setting flags given (`--store`, …): (setting, value, flag as typed).
    pub(crate) flags: Vec<(&'static str, String, &'static str)>,
    /// `--config`.
    pub(crate) config_flag: Option<PathBuf>,
}

impl Ctx {
    /// Resolve the configuration, with the subcommand's own `flags` (setting, value, flag) on top.
    pub(crate) fn config(
        &self,
        mut flags: Vec<(&'static str, String, &'static str)>,
    ) -> Result<Config> {
        flags.splice(0..0, self.flags.iter().cloned());
        let env = |name: &str| std::env::var(name).ok();
        Config::resolve(&Inputs {
            cwd: &self.cwd,
            config_flag: self.config_flag.as_deref(),
            flags,
            env: &env,
        })
    }

    /// Open the configured store.
    pub(crate) fn open(&self, config: &Config) -> Result<Opened> {
        stores::open(config)
    }

    /// The task cache over `store` with the configured inline limit, placement and symlink
    /// rule; callers add what their command uses (admission, budget, progress on [`Ctx::ui`]).
    pub(crate) fn cache(&self, store: Arc<dyn Store>, config: &Config) -> Cache<'static> {
        Cache::new(store)
            .with_inline_limit(config.inline_limit.value)
            .with_placement(config.link.value)
            .with_external_symlinks(config.allow_external_symlinks.value)
    }

    /// [`Ctx::open`] for a process that serves many builds: a failed remote tier is tried
    /// again after `retry_after` (see [`stores::open_long_lived`]).
    pub(crate) fn open_long_lived(
        &self,
        config: &Config,
        retry_after: std::time::Duration,
    ) -> Result<Opened> {
        stores::open_long_lived(config, retry_after)
    }
}

/// The trim budget flags of `larder trim` and `larder serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Budget {
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
}

impl Budget {
    /// The flags given, as flags for [`Ctx::config`].
    pub(crate) fn flags(&self) -> Vec<(&'static str, String, &'static str)> {
        [
            ("max_size", &self.max_size, "--max-size"),
            ("max_entries", &self.max_entries, "--max-entries"),
            ("min_free", &self.min_free, "--min-free"),
            ("max_free", &self.max_free, "--max-free"),
        ]
        .into_iter()
        .filter_map(|(name, value, flag)| value.as_ref().map(|v| (name, v.clone(), flag)))
        .collect()
    }
}

/// Persist the store's batched metadata; a failure is only a warning.
pub(crate) async fn flush(store: &dyn Store, ui: &Ui) {
    if let Err(e) = store.flush().await {
        ui.warn(format_args!("cannot save cache metadata: {e}"));
    }
}

/// `1 entry`, `2 entries`, `3 outputs`, `0 misses`.
pub(crate) fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        return format!("1 {thing}");
    }
    let many = if let Some(stem) = thing.strip_suffix('y') {
        format!("{stem}ies")
    } else if thing.ends_with('s') {
        format!("{thing}es")
    } else {
        format!("{thing}s")
    };
    format!("{n} {many}")
}

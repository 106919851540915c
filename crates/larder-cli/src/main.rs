//! `larder`: cache build steps, store and fetch files, inspect and trim caches.
//!
//! `main` parses the command line, sets up logging and the tokio runtime, runs one subcommand
//! and turns its result into an exit code: the subcommand's own (a wrapped command's code for
//! `exec`; 0 hit / 1 miss for `get`), or 2 after printing `larder: error: ...` once.
//!
//! Where each behaviour lives:
//! - the task-cache flow (signing a task through the stat cache, look-up and confined restore,
//!   storing outputs now or through the upload queue, trimming when over budget) is
//!   `larder_client`'s [`Cache`](larder_client::Cache); `exec`, `get`, `put` and the worker
//!   (both protocols) are front-ends over it;
//! - `cmd`: one module per subcommand: its flags, its calls into the library and the stores,
//!   and every line it prints. No `cmd` module imports another; what they share is in
//!   `cmd/mod.rs` (the context: configuration, the store opened, the cache built from them;
//!   flushing; exit codes);
//! - `config`: settings from larder.toml, `LARDER_*` variables and flags, each declared once;
//! - `stores`: store URLs to store stacks (tiers, read-only, best-effort, retry, trust layers);
//! - `policies`: the WebAssembly policies (eviction, admission, normalization) and the policy
//!   host `larder policy` uses too (`policies_disabled.rs` without the `policy` feature);
//! - `paths`: `--out`/FILE names inside the working directory, `--in` globs expanded;
//! - `progress`: warnings, status lines and progress bars on stderr, and the
//!   [`Progress`](larder_client::Progress) the library shows transfers through.

#![warn(missing_debug_implementations, unreachable_pub)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser, Subcommand};

mod cmd;
mod config;
mod paths;
#[cfg(feature = "policy")]
mod policies;
#[cfg(not(feature = "policy"))]
#[path = "policies_disabled.rs"]
mod policies;
mod progress;
mod stores;

use cmd::Ctx;
use progress::Ui;

/// A shared build-artifact cache.
///
/// Larder signs a build step by its command, chosen environment variables and input files,
/// keeps its outputs under that signature, and restores them (without running the step) to any
/// checkout that computes the same signature.
#[derive(Debug, Parser)]
#[command(
    name = "larder",
    version,
    long_version = long_version(),
    after_help = after_help()
)]
// Settings declared with a flag in `config.rs` (`--store`, …) are added to these as global
// options when the command line is parsed ([`parse`]); not in the doc comment, which is
// `larder --help`'s text.
struct Cli {
    /// The config file [env: LARDER_CONFIG] (default: ./larder.toml, searched upwards)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    config: Option<PathBuf>,
    /// Print what larder does (hits, misses, trims); twice for debug logs
    #[arg(short, long, global = true, action = ArgAction::Count, help_heading = "Global options")]
    verbose: u8,
    /// Print only errors
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command through the cache: restore its outputs on a hit, run and store on a miss
    Exec(cmd::exec::Args),
    /// Restore files stored under a key (exit 0 hit, 1 miss, 2 error)
    Get(cmd::get::Args),
    /// Store files under a key of your choosing
    Put(cmd::put::Args),
    /// Show entries, size, hits, misses and what the cache saved
    Stats(cmd::stats::Args),
    /// Evict entries (least recently used first, or as the eviction policy says) until the
    /// cache is within its budgets
    Trim(cmd::trim::Args),
    /// Re-verify every blob of the local cache against its digest and remove the damaged ones
    #[cfg(feature = "fs")]
    Verify(cmd::verify::Args),
    /// Show the resolved configuration and where each value came from
    Config(cmd::config::Args),
    /// Create and inspect the ed25519 keys that sign cache entries (trusted writers)
    Key(cmd::key::Args),
    /// Serve get/put requests read line by line from stdin (for build-system plugins)
    Worker(cmd::worker::Args),
    /// Serve the cache over HTTP to larder, ccache and Bazel clients
    #[cfg(feature = "server")]
    Serve(Box<cmd::serve::Args>),
    /// Check WebAssembly policies; simulate them on an access trace next to LRU and Belady
    #[cfg(feature = "policy")]
    Policy(cmd::policy::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(cmd::completions::Args),
    /// Print the manual page (roff), or write one page per subcommand with --dir
    Man(cmd::man::Args),
    /// Serve ccache 4.13+ as its remote storage helper (ccache-storage-<scheme>), or install
    /// the helper's names
    CcacheHelper(cmd::ccache_helper::Args),
}

/// `larder --version`: the version, then the stores and optional features compiled in, e.g.
/// `0.1.0 (stores: fs http cmd; features: server policy)`.
fn long_version() -> &'static str {
    static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let on = |features: &[(&'static str, bool)]| {
            let on: Vec<&str> = features.iter().filter(|f| f.1).map(|f| f.0).collect();
            if on.is_empty() {
                "none".to_owned()
            } else {
                on.join(" ")
            }
        };
        let stores = on(&[
            ("fs", cfg!(feature = "fs")),
            ("http", cfg!(feature = "http")),
            ("s3", cfg!(feature = "s3")),
            ("gcs", cfg!(feature = "gcs")),
            ("opendal", cfg!(feature = "opendal")),
            ("cmd", cfg!(feature = "cmd")),
        ]);
        let features = on(&[
            ("server", cfg!(feature = "server")),
            ("policy", cfg!(feature = "policy")),
        ]);
        format!(
            "{} (stores: {stores}; features: {features})",
            env!("CARGO_PKG_VERSION")
        )
    });
    LONG_VERSION.as_str()
}

fn after_help() -> String {
    format!(
        "Examples:\n  larder exec --in 'src/*.c' --out app -- cc -O2 -o app src/*.c\n  larder stats\n\n{}",
        config::env_help()
    )
}

/// Parse the command line: [`Cli`] plus a global option for every setting declared with a flag.
/// The flags given, as (setting, value, flag as typed), go into the configuration's top layer.
fn parse() -> (Cli, Vec<(&'static str, String, &'static str)>) {
    use clap::FromArgMatches;
    // Run as `ccache-storage-<scheme>`, larder is `larder ccache-helper`.
    let matches = command().get_matches_from(cmd::ccache_helper::argv());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, setting_flags(&matches))
}

/// [`Cli`]'s command with the settings' global flags added.
fn command() -> clap::Command {
    use clap::{Arg, CommandFactory};
    let mut command = Cli::command();
    for key in config::global_flags() {
        let Some(flag) = key.flag else {
            continue;
        };
        let help = format!("{} [env: {}]", capitalized(key.help), key.env);
        let arg = Arg::new(key.name)
            .long(flag.long.trim_start_matches('-'))
            .global(true)
            .help(help)
            .help_heading("Global options");
        let arg = match (flag.value_name, flag.many) {
            (None, _) => arg.action(ArgAction::SetTrue),
            (Some(name), false) => arg.value_name(name),
            (Some(name), true) => arg.value_name(name).action(ArgAction::Append),
        };
        command = command.arg(arg);
    }
    command
}

/// The settings' flags given on the command line: (setting, value, flag).
fn setting_flags(matches: &clap::ArgMatches) -> Vec<(&'static str, String, &'static str)> {
    // Global values are propagated down: the innermost subcommand's matches hold them all.
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    config::global_flags()
        .filter_map(|key| {
            let flag = key.flag?;
            let value = match flag.value_name {
                None => leaf.get_flag(key.name).then(|| "true".to_owned())?,
                Some(_) => {
                    let values: Vec<&String> = leaf.get_many::<String>(key.name)?.collect();
                    // One per line: a value may hold spaces (a `cmd://` template).
                    values
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            };
            Some((key.name, value, flag.long))
        })
        .collect()
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn main() -> ExitCode {
    let (cli, flags) = parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("larder: error: {e:#}");
        return ExitCode::from(cmd::EXIT_ERROR);
    }
    let ui = Ui::new(cli.verbose, cli.quiet);
    let code = match run(cli, flags, ui) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("larder: error: {e:#}");
            cmd::EXIT_ERROR
        }
    };
    ExitCode::from(code)
}

fn run(cli: Cli, flags: Vec<(&'static str, String, &'static str)>, ui: Ui) -> Result<u8> {
    // The ccache helper answers one small request at a time per ccache process: on one thread,
    // a request and the store call it makes (reqwest's connection task included) run without
    // handing over between threads, which is most of a remote hit's latency on a busy machine.
    let mut builder = match &cli.command {
        Command::CcacheHelper(_) => tokio::runtime::Builder::new_current_thread(),
        command => {
            // `exec` is one task: its blocking work (hashing, restoring, storing) runs in
            // `block_in_place` or on the blocking pool, and its remote I/O needs no second
            // worker, whose start is a measurable part of a hit's CPU.
            let workers = if matches!(command, Command::Exec(_)) {
                1
            } else {
                2
            };
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ctx = Ctx {
        ui,
        cwd: std::env::current_dir().context("cannot read the working directory")?,
        flags,
        config_flag: cli.config,
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Exec(args) => cmd::exec::run(args, &ctx).await,
            Command::Get(args) => cmd::get::run(args, &ctx).await,
            Command::Put(args) => cmd::put::run(args, &ctx).await,
            Command::Stats(args) => cmd::stats::run(args, &ctx).await,
            Command::Trim(args) => cmd::trim::run(args, &ctx).await,
            #[cfg(feature = "fs")]
            Command::Verify(args) => cmd::verify::run(args, &ctx).await,
            Command::Config(args) => cmd::config::run(args, &ctx).await,
            Command::Key(args) => cmd::key::run(args, &ctx).await,
            Command::Worker(args) => cmd::worker::run(args, &ctx).await,
            #[cfg(feature = "server")]
            Command::Serve(args) => cmd::serve::run(*args, &ctx).await,
            #[cfg(feature = "policy")]
            Command::Policy(args) => cmd::policy::run(args, &ctx).await,
            Command::Completions(args) => cmd::completions::run(args),
            Command::Man(args) => cmd::man::run(args),
            Command::CcacheHelper(args) => cmd::ccache_helper::run(args, &ctx).await,
        }
    })
}

/// Library logs (`tracing`) go to stderr: warnings by default, more with `-v`, or as
/// `LARDER_LOG` says. `larder serve` logs at info by default, with times, to `--log-file` when
/// given; the ccache helper likewise to `@log-file` or `LARDER_LOG_FILE`.
fn init_logging(cli: &Cli) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    #[cfg(feature = "server")]
    let (serving, log_file) = match &cli.command {
        Command::Serve(args) => (true, args.log_file.as_deref()),
        _ => (false, None),
    };
    #[cfg(not(feature = "server"))]
    let (serving, log_file): (bool, Option<&std::path::Path>) = (false, None);
    // The ccache helper is long-lived and ccache discards its stderr: it logs like a server,
    // to the file its attributes or LARDER_LOG_FILE name.
    let helper_log = match &cli.command {
        Command::CcacheHelper(_) => {
            let env = |name: &str| std::env::var(name).ok();
            cmd::ccache_helper::log_file(&env)
        }
        _ => None,
    };
    let (serving, log_file) = match &helper_log {
        Some(path) => (true, Some(path.as_path())),
        None => (serving, log_file),
    };
    let default = match (cli.quiet, cli.verbose, serving) {
        (true, _, _) => "error",
        (false, 0, true) => "info",
        (false, 0 | 1, false) => "warn",
        (false, 1, true) => "debug",
        (false, 2, _) => "debug",
        (false, _, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("LARDER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
        }
        None if serving => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
        // No colour: CliFormat writes none, but the fields' formatter would (italic names).
        None => builder
            .with_ansi(false)
            .event_format(CliFormat)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    Ok(())
}

/// Log lines of the one-shot commands read like larder's own messages:
/// `larder: warning: ...`, no time, no colour codes.
struct CliFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for CliFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "larder: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_flags_are_global_options() {
        command().debug_assert();
        for args in [
            &["larder", "--store", "/c", "stats"][..],
            &["larder", "stats", "--store", "/c"][..],
        ] {
            let m = command().try_get_matches_from(args).expect("parses");
            assert_eq!(
                setting_flags(&m),
                vec![("store", "/c".to_owned(), "--store")]
            );
        }
        let m = command()
            .try_get_matches_from(["larder", "stats"])
            .expect("parses");
        assert!(setting_flags(&m).is_empty());
    }

    #[test]
    fn long_version_names_the_stores_and_features_compiled_in() {
        let version = long_version();
        assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
        assert!(version.contains("stores: "), "{version}");
        assert!(version.contains("; features: "), "{version}");
        if cfg!(feature = "fs") {
            assert!(version.contains(" fs"), "{version}");
        }
        let err = command()
            .try_get_matches_from(["larder", "--version"])
            .expect_err("--version exits");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(err.to_string(), format!("larder {version}\n"));
    }
}

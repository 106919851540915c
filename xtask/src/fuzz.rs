//! `cargo xtask fuzz`: run every cargo-fuzz target in `fuzz/` (issue 16 item 6).
//!
//! The targets need the nightly toolchain and `cargo-fuzz`. `--short` gives each target 10 s,
//! and without nightly says so and succeeds: the stable toolchain is the only one a fresh
//! machine has. Under `CI`, a missing `cargo-fuzz` is installed.
//!
//! `cargo xtask test` does not run this: measured on the 2-core machine, installing cargo-fuzz
//! took 68 s and the cold build of the targets (libFuzzer, ASan, larder-core and larder-server
//! with their dependencies) 11 min 22 s, which the 40-minute budget of a cold CI run (26 min
//! without it) cannot take. CI instead replays every committed corpus on the stable toolchain,
//! through the same checks, in the ordinary tests (`crates/larder-core/tests/fuzz_corpus.rs`,
//! `crates/larder-server/tests/fuzz_corpus.rs`, the pickle reader's `fuzz_corpus` test). New inputs go to a scratch corpus
//! under the target directory, so a run never changes the committed `fuzz/corpus/`; a crash
//! leaves its input in `fuzz/artifacts/TARGET/` and fails the task.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags;

/// The targets, as named in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: &[&str] = &["entry_decode", "request_path", "pickle", "multipart"];

/// Seconds per target for `--short`.
const SHORT_SECONDS: u64 = 10;
/// Seconds per target otherwise, unless `--seconds` says.
const DEFAULT_SECONDS: u64 = 120;

fn nightly(sh: &Shell) -> bool {
    cmd!(sh, "cargo +nightly --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

fn cargo_fuzz(sh: &Shell) -> bool {
    cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

impl flags::Fuzz {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let seconds = match (self.short, self.seconds) {
            (_, Some(s)) => s,
            (true, None) => SHORT_SECONDS,
            (false, None) => DEFAULT_SECONDS,
        };
        if !nightly(sh) {
            if self.short {
                println!(
                    "xtask fuzz: skipped: no nightly toolchain (the corpora still run as tests)"
                );
                return Ok(());
            }
            bail!(
                "the fuzz targets need the nightly toolchain (`rustup toolchain install nightly`)"
            );
        }
        if !cargo_fuzz(sh) {
            if std::env::var_os("CI").is_none() {
                bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz`");
            }
            cmd!(sh, "cargo install --locked cargo-fuzz")
                .run()
                .context("installing cargo-fuzz")?;
        }
        let fuzz_dir = crate::project_root().join("fuzz");
        let _dir = sh.push_dir(&fuzz_dir);
        cmd!(sh, "cargo +nightly fuzz build")
            .run()
            .context("building the fuzz targets")?;
        let scratch = crate::target_dir().join("fuzz-corpus");
        for target in TARGETS {
            let new = scratch.join(target);
            sh.create_dir(&new)?;
            let committed = fuzz_dir.join("corpus").join(target);
            let max_time = format!("-max_total_time={seconds}");
            println!("xtask fuzz: {target} for {seconds} s");
            cmd!(
                sh,
                "cargo +nightly fuzz run {target} {new} {committed} -- {max_time} -timeout=10"
            )
            .run()
            .with_context(|| {
                format!("fuzz target {target} failed: its input is in fuzz/artifacts/{target}/")
            })?;
        }
        Ok(())
    }
}

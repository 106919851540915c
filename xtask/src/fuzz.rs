//! `cargo xtask fuzz`: run every cargo-fuzz target in `fuzz/` (issue 16 item 6).
//!
//! The targets need the nightly toolchain and `cargo-fuzz`. `--short` gives each target 10 s,
//! builds them in the dev profile without a sanitizer (coverage-guided still; overflow checks
//! and debug assertions on; the code is safe Rust, so AddressSanitizer adds little), and
//! without nightly says so and succeeds. Under `CI`, a missing `cargo-fuzz` is installed.
//!
//! `cargo xtask test` runs the short pass after the tests. Measured on the 2-core machine:
//! installing cargo-fuzz 68 s, the cold `--dev -s none` build of the targets (larder-core and
//! larder-server with their dependencies) 2 min 12 s, against 11 min 22 s for the release
//! build with AddressSanitizer that the long runs use. Every committed corpus is also replayed
//! on the stable toolchain, through the same checks, in the ordinary tests
//! (`crates/larder-core/tests/fuzz_corpus.rs`, `crates/larder-server/tests/fuzz_corpus.rs`, the
//! pickle reader's `fuzz_corpus` test). New inputs go to a scratch corpus under the target
//! directory, so a run never changes the committed `fuzz/corpus/`; a crash leaves its input in
//! `fuzz/artifacts/TARGET/` and fails the task.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags;

/// The targets, as named in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: &[&str] = &[
    "entry_decode",
    "request_path",
    "pickle",
    "multipart",
    "reapi",
];

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
                if self.short {
                    println!(
                        "xtask fuzz: skipped: cargo-fuzz is not installed (`cargo install cargo-fuzz`; the corpora still run as tests)"
                    );
                    return Ok(());
                }
                bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz`");
            }
            cmd!(sh, "cargo install --locked cargo-fuzz")
                .run()
                .context("installing cargo-fuzz")?;
        }
        let fuzz_dir = crate::project_root().join("fuzz");
        let _dir = sh.push_dir(&fuzz_dir);
        let profile: &[&str] = if self.short {
            &["--dev", "-s", "none"]
        } else {
            &[]
        };
        cmd!(sh, "cargo +nightly fuzz build {profile...}")
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
                "cargo +nightly fuzz run {profile...} {target} {new} {committed} -- {max_time} -timeout=10"
            )
            .run()
            .with_context(|| {
                format!("fuzz target {target} failed: its input is in fuzz/artifacts/{target}/")
            })?;
        }
        Ok(())
    }
}

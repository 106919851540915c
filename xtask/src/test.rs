//! `cargo xtask test`: everything CI checks, runnable on a fresh Debian machine.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags;

/// Debian packages the tests use, with a command that proves each is there.
const APT_PACKAGES: &[(&str, &str)] = &[
    // `larder exec` is tested around a real C compile.
    ("gcc", "cc"),
    ("libc6-dev", "/usr/include/stdio.h"),
];

fn have(sh: &Shell, probe: &str) -> bool {
    if probe.starts_with('/') {
        return std::path::Path::new(probe).exists();
    }
    cmd!(sh, "sh -c 'command -v \"$0\"' {probe}")
        .quiet()
        .ignore_stdout()
        .run()
        .is_ok()
}

pub(crate) fn install_prerequisites(sh: &Shell) -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, probe)| !have(sh, probe))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    // `env` as root, `sudo` otherwise: both take VAR=value before the command.
    let runner = if cmd!(sh, "id -u").read()?.trim() == "0" {
        "env"
    } else {
        "sudo"
    };
    cmd!(sh, "{runner} apt-get update -q")
        .run()
        .context("apt-get update failed")?;
    cmd!(
        sh,
        "{runner} DEBIAN_FRONTEND=noninteractive apt-get install -y -q {missing...}"
    )
    .run()
    .context("apt-get install failed")?;
    Ok(())
}

impl flags::Test {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        install_prerequisites(sh)?;
        if !self.no_lint {
            if cmd!(sh, "cargo fmt --all -- --check").run().is_err() {
                bail!("code is not formatted: run `cargo fmt --all`");
            }
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --locked -- -D warnings"
            )
            .run()
            .context("clippy found problems")?;
        }
        // Benches are compiled (not run) so they cannot rot.
        cmd!(
            sh,
            "cargo test --workspace --locked --all-targets --no-fail-fast"
        )
        .env("RUST_BACKTRACE", "1")
        .run()
        .context("tests failed")?;
        cmd!(sh, "cargo test --workspace --locked --doc")
            .run()
            .context("doc tests failed")?;
        Ok(())
    }
}

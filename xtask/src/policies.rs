//! `cargo xtask policies`: build the guest policies in `policies/` for `wasm32-unknown-unknown`
//! as WebAssembly components, with the linker the Rust toolchain bundles (`wasm-component-ld`
//! driving `wasm-ld`): no extra tools to install.
//!
//! `policies/` is its own cargo workspace, built into `target/policies/` (beside the host's
//! build output, so CI caches both together); each component is then copied to
//! `target/policies/<name>.wasm` (`lru.wasm`, `hostile-loop.wasm`, ...), where larder-policy's
//! tests and benches look for them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::{flags, project_root, target_dir};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

impl flags::Policies {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        let out = build(sh)?;
        println!("policies built into {}", out.display());
        Ok(())
    }
}

/// Where the built components end up.
pub(crate) fn out_dir() -> PathBuf {
    target_dir().join("policies")
}

/// What `cargo xtask test` needs before `cargo test`: the components larder-policy's tests
/// run, and the guest helpers' own unit tests (run on the host; they are plain Rust).
pub(crate) fn build_for_tests(sh: &Shell) -> Result<()> {
    build(sh)?;
    let manifest = project_root().join("policies/Cargo.toml");
    let out = out_dir();
    cmd!(
        sh,
        "cargo test --manifest-path {manifest} --target-dir {out} -p guest-util"
    )
    .run()
    .context("guest-util tests failed")?;
    Ok(())
}

/// Install the wasm target if it is missing.
fn ensure_target(sh: &Shell) -> Result<()> {
    let installed = cmd!(sh, "rustup target list --installed")
        .read()
        .unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("xtask: rustup target add {WASM_TARGET}");
    cmd!(sh, "rustup target add {WASM_TARGET}")
        .run()
        .context("could not install the wasm32-unknown-unknown target")
}

/// Build every guest in `policies/` and copy the components to [`out_dir`].
pub(crate) fn build(sh: &Shell) -> Result<PathBuf> {
    ensure_target(sh)?;
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let host = cmd!(sh, "rustc --print host-tuple")
        .read()
        .unwrap_or_else(|_| "x86_64-unknown-linux-gnu".to_owned());
    let tc = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin");
    let linker = tc.join("wasm-component-ld");
    let wasm_ld = tc.join("gcc-ld/wasm-ld");
    if !linker.exists() || !wasm_ld.exists() {
        bail!(
            "the toolchain has no {} or {}: a Rust toolchain 1.82 or later ships both",
            linker.display(),
            wasm_ld.display()
        );
    }
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    rustflags.push_str(&format!(
        " -C linker={} -C link-arg=--wasm-ld-path={}",
        linker.display(),
        wasm_ld.display()
    ));
    let out = out_dir();
    let manifest = project_root().join("policies/Cargo.toml");
    cmd!(
        sh,
        "cargo build --release --target {WASM_TARGET} --manifest-path {manifest} --target-dir {out}"
    )
    .env("RUSTFLAGS", rustflags.trim())
    .run()
    .context("building the guest policies failed")?;
    let built = out.join(WASM_TARGET).join("release");
    let mut n = 0;
    for entry in
        std::fs::read_dir(&built).with_context(|| format!("reading {}", built.display()))?
    {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".wasm") else {
            continue;
        };
        let Some(name) = stem.strip_prefix("larder_policy_") else {
            continue;
        };
        let dest = out.join(format!("{}.wasm", name.replace('_', "-")));
        std::fs::copy(&path, &dest)
            .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!("no components found in {}", built.display());
    }
    Ok(out)
}

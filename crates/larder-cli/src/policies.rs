//! The configured WebAssembly policies: eviction, which the stores trim with, admission, asked
//! before the CLI stores an entry, and the path normalizer `larder exec` signs with, all loaded
//! through one [`host`] (which `larder policy` uses too). This is the `policy` build;
//! `policies_disabled.rs` stands in without it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use larder_core::admission::AdmissionPolicy;
use larder_core::normalize::PathNormalizer;
use larder_policy::{NormalizeContext, PolicyHost};

use crate::config::Config;
use crate::progress::Ui;

/// The configured admission policy, if any: asked before `larder exec`, `put` and the worker
/// store an entry (through the task cache) and before `larder serve` stores one. A policy
/// that cannot be loaded is a warning: everything is admitted.
pub(crate) fn admission_policy(config: &Config, ui: &Ui) -> Option<Arc<dyn AdmissionPolicy>> {
    let path = config.admission_policy.value.as_ref()?;
    match host().admission(path, &config.admission_config.value) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            ui.warn(format_args!(
                "cannot load the admission policy {} (from {}): {e}; storing every entry",
                path.display(),
                config.admission_policy.source
            ));
            None
        }
    }
}

/// The configured path normalizer for a task run in `cwd`, or `None` when there is none.
///
/// Its workspace root is the directory of the `larder.toml` found above `cwd` (so paths
/// anywhere in the checkout normalize alike), else `cwd`.
///
/// # Errors
/// The normalizer cannot be loaded or initialised: the caller must not cache the task (a
/// guessed normalization could give false hits).
pub(crate) fn normalizer(config: &Config, cwd: &Path) -> Result<Option<Box<dyn PathNormalizer>>> {
    let Some(path) = &config.normalize_policy.value else {
        return Ok(None);
    };
    let root = config
        .file
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| cwd.starts_with(dir))
        .unwrap_or(cwd);
    let env_dir = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| Path::new(v).is_absolute())
    };
    let ctx = NormalizeContext {
        workspace_root: root.display().to_string(),
        home_dir: env_dir("HOME"),
        target_dir: env_dir("CARGO_TARGET_DIR"),
        host_os: std::env::consts::OS.to_owned(),
    };
    let n = host()
        .normalizer(path, &config.normalize_config.value, ctx)
        .with_context(|| {
            format!(
                "cannot load the path normalizer {} (from {})",
                path.display(),
                config.normalize_policy.source
            )
        })?;
    Ok(Some(Box::new(n)))
}

/// The configured WebAssembly eviction policy, if any. A policy that cannot be loaded is a
/// warning: trims then go in LRU order, and nothing else changes.
pub(crate) fn eviction_policy(
    config: &Config,
) -> Option<std::sync::Arc<dyn larder_core::eviction::EvictionPolicy>> {
    let path = config.eviction_policy.value.as_ref()?;
    match host().eviction(path, &config.eviction_config.value) {
        Ok(policy) => Some(Arc::new(policy)),
        Err(e) => {
            tracing::warn!(
                "cannot load the eviction policy {} (from {}): {e}; trimming in LRU order",
                path.display(),
                config.eviction_policy.source
            );
            None
        }
    }
}

/// A policy host that keeps compiled components in the user's cache directory
/// (`$XDG_CACHE_HOME/larder/policies`, else `~/.cache/larder/policies`), so a policy is only
/// compiled once per wasm file and wasmtime version.
pub(crate) fn host() -> PolicyHost {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match base {
        Some(dir) => PolicyHost::new().with_cache_dir(dir.join("larder").join("policies")),
        None => PolicyHost::new(),
    }
}

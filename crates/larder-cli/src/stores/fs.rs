//! The filesystem store (`larder-fs`): a directory shared by every larder process on the machine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use larder_fs::{Compression, FsConfig, FsStore};

use super::{Opened, StoreUrl};
use crate::config::{self, Config};

/// Open (creating if needed) the cache directory `url` names.
pub(super) fn open(url: &StoreUrl, config: &Config) -> Result<Opened> {
    let root = PathBuf::from(&url.location);
    let compression = match config.compression.value {
        config::Compression::Auto => Compression::Auto,
        config::Compression::Off => Compression::Off,
        config::Compression::Level(l) => Compression::Level(l),
    };
    let fs_config = FsConfig::default()
        .with_compression(compression)
        .with_fsync(config.fsync.value)
        .with_eviction(eviction_policy(config))
        // A trace that cannot be written must not cost the cache: a warning, then no trace.
        .with_trace(config.trace_log().unwrap_or_else(|e| {
            tracing::warn!("{e:#}");
            None
        }));
    let store = FsStore::open(&root, fs_config)
        .with_context(|| format!("cannot open the cache directory {}", root.display()))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: Some(root),
    })
}

/// The configured WebAssembly eviction policy, if any. A policy that cannot be loaded is a
/// warning: trims then go in LRU order, and nothing else changes.
#[cfg(feature = "policy")]
pub(crate) fn eviction_policy(
    config: &Config,
) -> Option<std::sync::Arc<dyn larder_core::eviction::EvictionPolicy>> {
    let path = config.eviction_policy.value.as_ref()?;
    match crate::cmd::policy::host().eviction(path, &config.eviction_config.value) {
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

/// Without the `policy` feature, a configured policy is a warning.
#[cfg(not(feature = "policy"))]
pub(crate) fn eviction_policy(
    config: &Config,
) -> Option<std::sync::Arc<dyn larder_core::eviction::EvictionPolicy>> {
    let path = config.eviction_policy.value.as_ref()?;
    tracing::warn!(
        "eviction policy {} ignored: this larder was built without the `policy` feature; trimming in LRU order",
        path.display()
    );
    None
}

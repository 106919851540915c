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
        .with_eviction(crate::policies::eviction_policy(config))
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
        tiers: None,
        budget: None,
    })
}

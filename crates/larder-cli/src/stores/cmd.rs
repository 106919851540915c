//! The command store (`larder-cmd`): `cmd://BASE?put=TEMPLATE&get=TEMPLATE`, or
//! `cmd://BASE` with the templates in `LARDER_CMD_PUT`/`LARDER_CMD_GET` (or `LARDER_CMD_COPY`),
//! as wafcache's `WAFCACHE_CMD`. See the `larder-cmd` crate docs for every parameter.

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_cmd::CmdStoreBuilder;

use super::{Opened, StoreUrl};

/// Open the command store `url` describes.
pub(super) fn open(url: &StoreUrl) -> Result<Opened> {
    // SIGINT/SIGTERM while a command runs kill its process group and end larder: without
    // this, a signal handler installed earlier (exec forwards signals to its command) would
    // swallow them and leave the command running.
    let store = CmdStoreBuilder::from_url(&url.location)
        .map(|b| b.with_exit_on_signal(true))
        .and_then(|b| b.build())
        .with_context(|| format!("cannot use the command store {}", url.location))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
        tiers: None,
        budget: None,
    })
}

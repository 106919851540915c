//! The OpenDAL store (`larder-opendal`): `opendal+SERVICE://...` for the services compiled in
//! (fs, webdav, azblob, redis in this build), options from the URL's query and
//! `LARDER_OPENDAL_<OPTION>` (see larder-opendal's docs). Trims evict with the configured
//! eviction policy where the service can list (larder-opendal's docs say which).

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_opendal::{BucketBuilder, OpendalStoreBuilder};

use super::{Opened, StoreUrl};
use crate::config::Config;

/// Open the store `url` names. Only the `fs` service touches anything now (it creates its
/// directory); a dead or misconfigured remote shows up on first use, where the CLI turns it
/// into a miss and a warning.
pub(super) fn open(url: &StoreUrl, config: &Config) -> Result<Opened> {
    let store = OpendalStoreBuilder::from_url(&url.location)
        .map(|b| match crate::policies::eviction_policy(config) {
            Some(policy) => b.with_eviction_policy(policy),
            None => b,
        })
        .and_then(|b| b.build())
        .with_context(|| format!("cannot use the OpenDAL store {}", url.location))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
        tiers: None,
        budget: None,
    })
}

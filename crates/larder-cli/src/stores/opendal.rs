//! The OpenDAL store (`larder-opendal`): `opendal+SERVICE://...` for the services compiled in
//! (fs, webdav, azblob, redis in this build), options from the URL's query and
//! `LARDER_OPENDAL_<OPTION>` (see larder-opendal's docs). Trimming is not supported on it yet.

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_opendal::OpendalStore;

use super::{Opened, StoreUrl};

/// Open the store `url` names. Only the `fs` service touches anything now (it creates its
/// directory); a dead or misconfigured remote shows up on first use, where the CLI turns it
/// into a miss and a warning.
pub(super) fn open(url: &StoreUrl) -> Result<Opened> {
    let store = OpendalStore::from_url(&url.location)
        .with_context(|| format!("cannot use the OpenDAL store {}", url.location))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
    })
}

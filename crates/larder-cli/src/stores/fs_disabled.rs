//! The filesystem store, when larder is built without the `fs` feature.

use anyhow::Result;

use super::{Opened, StoreUrl};
use crate::config::Config;

/// Fail with the feature the filesystem store needs.
pub(super) fn open(url: &StoreUrl, _config: &Config) -> Result<Opened> {
    super::disabled::open(url, "fs")
}

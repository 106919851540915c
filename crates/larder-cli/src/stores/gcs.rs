//! The Google Cloud Storage store (`larder-gcs`): `gs://BUCKET/PREFIX`, with Application Default
//! Credentials, or none with `LARDER_GCS_ANONYMOUS=1` (emulators); `LARDER_GCS_ENDPOINT` points
//! it at another endpoint.

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_gcs::{BucketBuilder, GcsStoreBuilder};

use super::{Opened, StoreUrl};
use crate::config::Config;

/// Open the bucket `url` names. Nothing is contacted yet: a dead or misconfigured endpoint shows
/// up on first use, where the CLI turns it into a miss and a warning. Trims evict with the
/// configured eviction policy.
pub(super) fn open(url: &StoreUrl, config: &Config) -> Result<Opened> {
    let store = GcsStoreBuilder::from_url(&url.location)
        .map(|b| match crate::policies::eviction_policy(config) {
            Some(policy) => b.with_eviction_policy(policy),
            None => b,
        })
        .and_then(|b| b.build())
        .with_context(|| format!("cannot use the GCS store {}", url.location))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
        tiers: None,
        budget: None,
    })
}

//! The S3 store (`larder-s3`): `s3://BUCKET/PREFIX` (AWS, the normal credential chain) and
//! `minio://HOST:PORT/BUCKET/PREFIX` (any S3-compatible server; keys from
//! `LARDER_S3_ACCESS_KEY`/`LARDER_S3_SECRET_KEY` or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_s3::{BucketBuilder, S3StoreBuilder};

use super::{Opened, StoreUrl};
use crate::config::Config;

/// Open the bucket `url` names. Nothing is contacted yet: a dead or misconfigured server shows
/// up on first use, where the CLI turns it into a miss and a warning. Trims evict with the
/// configured eviction policy, as the filesystem store's do.
pub(super) fn open(url: &StoreUrl, config: &Config) -> Result<Opened> {
    let store = S3StoreBuilder::from_url(&url.location)
        .map(|b| match crate::policies::eviction_policy(config) {
            Some(policy) => b.with_eviction_policy(policy),
            None => b,
        })
        .and_then(|b| b.build())
        .with_context(|| format!("cannot use the S3 store {}", url.location))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
        tiers: None,
        budget: None,
    })
}

//! Remote trimming (larder-bucket's trim) on OpenDAL's `azblob` service against Azurite: the
//! shared trim checks, with ETags as versions and create-only leases (`If-None-Match: *`).
//! Needs the `services-azblob` feature; skipped with a reason when `azurite-blob` is missing,
//! except under CI.
#![cfg(feature = "services-azblob")]

mod common;

use std::time::Duration;

use common::azurite::Azurite;
use common::trim;
use larder_opendal::{BucketBuilder, OpendalStore};

async fn started() -> Option<Azurite> {
    let azurite = Azurite::start()?;
    azurite.create_container("trim").await;
    Some(azurite)
}

fn store(azurite: &Azurite, prefix: &str, grace: Duration) -> OpendalStore {
    azurite
        .builder(&format!("trim/{prefix}"))
        .with_trim_grace(grace)
        .build()
        .expect("store")
}

/// One Azurite for all checks, each in its own prefix (starting Azurite takes seconds).
#[tokio::test(flavor = "multi_thread")]
async fn trim_on_azblob_against_azurite() {
    let Some(az) = started().await else {
        return;
    };
    assert!(
        store(&az, "streams", Duration::ZERO)
            .backend()
            .inner()
            .streams_blobs()
    );
    trim::shared(|prefix, grace| store(&az, prefix, grace)).await;
}

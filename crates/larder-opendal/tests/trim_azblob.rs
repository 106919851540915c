//! Remote trimming (larder-bucket's trim) on OpenDAL's `azblob` service against Azurite: the
//! shared trim checks, with ETags as versions and create-only leases (`If-None-Match: *`).
//! Needs the `services-azblob` feature; skipped with a reason when `azurite-blob` is missing,
//! except under CI.
#![cfg(feature = "services-azblob")]

mod common;

use std::time::Duration;

use common::azurite::Azurite;
use common::trim;
use larder_opendal::OpendalStore;

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
    let s = store(&az, "budget", Duration::ZERO);
    assert!(s.streams_blobs());
    trim::budgets_hold_and_recently_used_entries_and_live_blobs_stay(&s).await;
    trim::blobs_of_a_put_in_flight_survive(&store(&az, "race", Duration::from_secs(3600))).await;
    let grace = Duration::from_secs(2);
    trim::a_reused_old_blob_is_refreshed(&store(&az, "refresh", grace), grace).await;
    trim::one_trim_at_a_time(&store(&az, "lock", Duration::ZERO)).await;
    trim::an_entry_rewritten_since_listing_is_not_evicted(&store(&az, "version", Duration::ZERO))
        .await;
}

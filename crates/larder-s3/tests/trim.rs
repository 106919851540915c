//! Remote trimming against a real SeaweedFS: larder-bucket's trim checks (budgets hold,
//! recently used entries stay, live blobs are never deleted, blobs a concurrent put relies on
//! survive, old reused blobs are refreshed, one trim at a time) over the S3 store.

mod common;

use std::time::Duration;

use larder_bucket::testkit;
use larder_s3::{BucketBuilder, S3Store};
use larder_testservers::SeaweedFs;

/// A store maker for the checks: a store under `prefix` in `s3`'s bucket with that grace.
fn maker(s3: &SeaweedFs) -> impl Fn(&str, Duration) -> S3Store + '_ {
    move |prefix, grace| {
        common::builder(s3)
            .with_prefix(prefix)
            .expect("prefix")
            .with_trim_grace(grace)
            .build()
            .expect("store")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trim_keeps_budgets_and_recently_used_entries_and_live_blobs() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    testkit::budgets_hold_and_recently_used_entries_and_live_blobs_stay(maker(&s3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_of_a_put_in_flight_survive_a_trim() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    testkit::blobs_of_a_put_in_flight_survive(maker(&s3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_blob_a_writer_finds_present_outlives_the_next_trim() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    testkit::an_old_blob_a_writer_finds_present_outlives_the_next_trim(maker(&s3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trim_at_a_time() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    testkit::one_trim_at_a_time(maker(&s3)).await;
}

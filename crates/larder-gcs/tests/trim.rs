//! Remote trimming against a real fake-gcs-server: larder-bucket's trim checks (budgets hold,
//! recently used entries stay, live blobs are never deleted, blobs a concurrent put relies on
//! survive, old reused blobs are refreshed, one trim at a time) over the GCS store.

mod common;

use std::time::Duration;

use larder_gcs::{BucketBuilder, GcsStore};
use larder_testservers::FakeGcs;

/// A store maker for the checks: a store under `prefix` in `gcs`'s bucket with that grace.
fn maker(gcs: &FakeGcs) -> impl Fn(&str, Duration) -> GcsStore + '_ {
    move |prefix, grace| {
        let b = common::builder(gcs).with_prefix(prefix).expect("prefix");
        b.with_trim_grace(grace).build().expect("store")
    }
}

larder_bucket::trim_tests!(FakeGcs::start(), maker);

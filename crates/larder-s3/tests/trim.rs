//! Remote trimming against a real SeaweedFS: larder-bucket's trim checks (budgets hold,
//! recently used entries stay, live blobs are never deleted, blobs a concurrent put relies on
//! survive, old reused blobs are refreshed, one trim at a time) over the S3 store.

mod common;

use std::time::Duration;

use larder_s3::{BucketBuilder, S3Store};
use larder_testservers::SeaweedFs;

/// A store maker for the checks: a store under `prefix` in `s3`'s bucket with that grace.
fn maker(s3: &SeaweedFs) -> impl Fn(&str, Duration) -> S3Store + '_ {
    move |prefix, grace| {
        let b = common::builder(s3).with_prefix(prefix).expect("prefix");
        b.with_trim_grace(grace).build().expect("store")
    }
}

larder_bucket::trim_tests!(SeaweedFs::start(), maker);

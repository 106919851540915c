//! What larder-gcs's tests share: a store builder pointed at a test fake-gcs-server.

#![allow(dead_code)]

use larder_gcs::{BucketBuilder, GcsStore, GcsStoreBuilder};
use larder_testservers::FakeGcs;

/// A builder for an anonymous store in `gcs`'s bucket, on its endpoint.
pub fn builder(gcs: &FakeGcs) -> GcsStoreBuilder {
    GcsStoreBuilder::new(gcs.bucket())
        .with_endpoint(gcs.endpoint())
        .with_anonymous(true)
}

/// A store in `gcs`'s bucket under a prefix unique to this run of test `name`.
pub fn store(gcs: &FakeGcs, name: &str) -> GcsStore {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("t/{name}-{}-{nanos}", std::process::id());
    let b = builder(gcs).with_prefix(prefix).expect("prefix");
    b.build().expect("store")
}

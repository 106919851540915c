//! What larder-s3's tests and bench share: a store builder pointed at a test SeaweedFS, and a
//! plain SDK client on the same server (the bench's baseline).
// Each test binary (and the bench) uses a part of this module.
#![allow(dead_code)]

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use larder_s3::S3StoreBuilder;
use larder_testservers::SeaweedFs;

/// A builder for a store in `s3`'s bucket, with its endpoint, path-style addressing and keys.
pub fn builder(s3: &SeaweedFs) -> S3StoreBuilder {
    S3StoreBuilder::new(s3.bucket())
        .with_endpoint(s3.endpoint())
        .with_path_style(true)
        .with_credentials(s3.access_key(), s3.secret_key())
}

/// A plain SDK client on `s3` (plain http, the server's keys).
pub fn raw_client(s3: &SeaweedFs) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(s3.endpoint())
        .region(Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            s3.access_key(),
            s3.secret_key(),
            None,
            None,
            "larder-test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

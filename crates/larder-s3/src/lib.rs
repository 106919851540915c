//! Larder's S3 store: a [`Store`](larder_core::Store) in an S3 bucket — AWS S3, MinIO,
//! SeaweedFS, Ceph or any S3-compatible service.
//!
//! - `s3://BUCKET/PREFIX`: AWS, with the normal credential chain (env, profile, SSO-free web
//!   identity, ECS, IMDS) and region.
//! - `minio://HOST:PORT/BUCKET/PREFIX`: any S3-compatible server over http (`?tls=true` for
//!   https), path-style, keys from `LARDER_S3_ACCESS_KEY`/`LARDER_S3_SECRET_KEY` (or
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
//! - Any other endpoint: `LARDER_S3_ENDPOINT`, or `?endpoint=URL` on either form.
//!
//! This crate supplies S3's object primitives ([`S3Bucket`]), its configuration and its error
//! mapping; the store itself — layout, verification, refresh-on-reuse, access records, remote
//! trim — is [`larder_bucket::BucketStore`], shared with GCS and OpenDAL. What is S3's own:
//! - blobs above the part size (8 MiB) go up as multipart uploads with a bounded number of
//!   parts in flight (memory stays flat), completed only once the bytes have verified;
//! - create-only entry writes use `If-None-Match: *` (S3, MinIO and SeaweedFS honour it;
//!   `?create_only=false` checks first instead, for services that do not);
//! - an old blob about to be reused is refreshed by a copy onto itself;
//! - requests are retried by the SDK's standard strategy on temporary errors only (time-outs,
//!   connection failures, throttling, 5xx); errors are classified for callers the same way.
//!
//! ```no_run
//! # fn example() -> larder_core::Result<()> {
//! let store = larder_s3::S3Store::from_url("minio://127.0.0.1:9000/cache/team-a")?;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod error;

pub use backend::S3Bucket;
pub use config::{
    ACCESS_KEY_ENV, ENDPOINT_ENV, MIN_PART_SIZE, REGION_ENV, S3StoreBuilder, SECRET_KEY_ENV,
};
pub use larder_bucket::BucketBuilder;

/// A larder store in an S3 bucket.
pub type S3Store = larder_bucket::BucketStore<S3Bucket>;

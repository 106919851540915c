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
//! Behaviour:
//! - Blobs are stored raw under `PREFIX/blobs/<blake3>`, entries under
//!   `PREFIX/entries/<storage name>` with their size, creation time and cost as object metadata.
//! - Uploads above the part size (8 MiB) are multipart with a bounded number of parts in flight:
//!   memory stays flat whatever the blob's size. Bytes are verified before anything is published.
//! - Downloads stream and are verified against the BLAKE3 digest; a corrupt blob is deleted and
//!   read as [`Error::Corrupt`](larder_core::Error::Corrupt) (a miss for restores).
//! - Create-only entry writes use `If-None-Match: *` (S3, MinIO and SeaweedFS honour it;
//!   `?create_only=false` checks first instead, for services that do not).
//! - Requests are retried by the SDK's standard strategy on temporary errors only (time-outs,
//!   connection failures, throttling, 5xx); errors are classified for callers the same way.
//! - Trimming (`larder trim --store s3://...`): hits are counted in memory and written as small
//!   access records at flush; a trim folds them, evicts with the configured policy down to the
//!   byte and entry budgets, and deletes unreferenced blobs older than a grace period. See
//!   `docs/remote-trim.md` for the design and its cost.
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
mod reader;
mod writer;

pub use backend::S3Store;
pub use config::{
    ACCESS_KEY_ENV, ENDPOINT_ENV, MIN_PART_SIZE, REGION_ENV, S3StoreBuilder, SECRET_KEY_ENV,
};

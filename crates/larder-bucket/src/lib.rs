//! What larder's object-store backends share: the trimming of a bucket, over a small trait of
//! object primitives ([`Bucket`]) that each backend (larder-s3, larder-gcs, larder-opendal)
//! implements.
//!
//! - [`access`]: access records. Object stores keep no access times, so hits are counted in
//!   memory ([`AccessLog`]) and written as small objects under `PREFIX/access/` at flush.
//! - [`trim`]: one trim at a time per prefix (a lease object), folding the access records
//!   into an index, evicting with the configured eviction policy down to byte and entry
//!   budgets, and deleting unreferenced blobs only after a grace period.
//!
//! - `testkit` (feature): the trim checks every such store runs against its real server.
//!
//! See `docs/remote-trim.md` for the design and its cost per get.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod access;
mod bucket;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trim;

pub use access::AccessLog;
pub use bucket::{Bucket, Listed};
pub use store::{find_missing, stats_from_listings};
pub use trim::trim;

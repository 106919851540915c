//! Larder's one store over object services: [`BucketStore`] implements the whole
//! [`Store`](larder_core::Store) contract over a small trait of object primitives
//! ([`Bucket`]) that each backend (larder-s3, larder-gcs, larder-opendal) implements with its
//! configuration and error mapping. A new object service supplies the primitives and gets the
//! layout, verification, refresh-on-reuse, access records and remote trim from here.
//!
//! - [`store`]: [`BucketStore`], the layout and the contract's behaviour; paged listings and
//!   listings completed with modification times;
//! - [`settings`]: what every backend is configured with, its builder ([`BucketBuilder`]:
//!   the shared setters and `build`), store-URL parsing ([`StoreUrl`]), bucket-name and part-size
//!   checks, environment variables and [`Secret`]s kept out of `Debug`;
//! - [`parts`]: [`InParts`], large blobs as parts and a manifest, for services that take an
//!   object only in one write;
//! - [`upload`]: verifying an upload before anything is published; cutting a stream into parts
//!   and sending them a few at a time; `multipart/related` bodies;
//! - [`error`]: how backends classify service failures ([`error::Failure`], HTTP statuses),
//!   and retry them where their client does not ([`error::retrying`]);
//! - [`access`]: access records. Object stores keep no access times, so hits are counted in
//!   memory ([`AccessLog`]) and written as small objects under `PREFIX/access/` at flush;
//! - [`trim`]: one trim at a time per prefix (a lease object), folding the access records
//!   into an index, evicting with the configured eviction policy down to byte and entry
//!   budgets, and deleting unreferenced blobs only after a grace period.
//!
//! - `testkit` (feature): the trim checks every such store runs against its real server, and
//!   the URL checks every store's parser passes.
//!
//! See `docs/remote-trim.md` for the trim's design and its cost per get.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod access;
mod bucket;
pub mod error;
pub mod parts;
pub mod settings;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trim;
pub mod upload;

pub use access::AccessLog;
pub use bucket::{Bucket, Features, Listed, PutObject};
pub use parts::InParts;
pub use settings::{BucketBuilder, BucketSettings, Lazy, Secret, StoreUrl};
pub use store::{BucketStore, FromUrl};
pub use trim::trim;

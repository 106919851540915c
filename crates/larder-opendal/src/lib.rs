//! larder-opendal: a larder store over any OpenDAL service. The crate documentation is its
//! README.md, included below.
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod error;
mod parts;

pub use backend::{OpendalBucket, blob_path, entry_path, manifest_path, part_path};
pub use config::{ENV_PREFIX, LARDER_KEYS, MIN_PART_SIZE, OpendalStoreBuilder, URL_PREFIX};
pub use larder_bucket::BucketBuilder;

/// A larder store in an OpenDAL service.
pub type OpendalStore = larder_bucket::BucketStore<OpendalBucket>;

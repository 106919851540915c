//! larder-opendal: a larder store over any OpenDAL service. The crate documentation is its
//! README.md, included below.
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod error;

pub use backend::OpendalBucket;
pub use config::{ENV_PREFIX, LARDER_KEYS, MIN_PART_SIZE, OpendalStoreBuilder, URL_PREFIX};
pub use larder_bucket::BucketBuilder;

/// A larder store in an OpenDAL service: large blobs in parts where the service takes an object
/// only in one write.
pub type OpendalStore = larder_bucket::BucketStore<larder_bucket::InParts<OpendalBucket>>;

//! larder-opendal: a larder store over any OpenDAL service. The crate documentation is its
//! README.md, included below.
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod error;
mod reader;
mod writer;

pub use backend::OpendalStore;
pub use config::{ENV_PREFIX, LARDER_KEYS, MIN_PART_SIZE, OpendalStoreBuilder, URL_PREFIX};

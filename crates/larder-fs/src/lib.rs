//! Larder's local filesystem store: the embedded default cache, and the server's disk tier.
//!
#![doc = include_str!("docs.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod core;
mod error;
mod hot;
mod index;
mod place;
mod reader;
#[cfg(feature = "testkit")]
pub mod testkit;
mod trim;
mod writer;

pub use backend::FsStore;
pub use config::{Compression, FsConfig};

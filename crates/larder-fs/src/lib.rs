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
mod scrub;
#[cfg(feature = "testkit")]
pub mod testkit;
mod trim;
mod verified;
mod writer;

pub use backend::{BlobReads, FsStore};
pub use config::{Compression, FsConfig};
pub use scrub::{ScrubProgress, ScrubReport, ScrubStatus};

/// Remove the temporary files (writes in progress) that process `pid` left in the cache
/// directory `root` when it died; returns how many.
///
/// A process that is killed in the middle of a write leaves its temporary file behind (nothing
/// visible: only a rename publishes it). Trims remove such files once they are an hour old;
/// this is for a caller that knows `pid` is gone and will not come back to them, such as a
/// server taking over the directory lock from one that crashed. Files of every other process
/// are left alone.
///
/// # Errors
/// When `tmp/` cannot be listed or a file cannot be removed.
pub fn remove_temp_files_of(root: &std::path::Path, pid: u32) -> std::io::Result<usize> {
    core::remove_tmp_of(root, pid)
}

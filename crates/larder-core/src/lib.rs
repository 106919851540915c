//! Larder's core: what every other crate plugs into.
//!
//! - [`signature`]: task signatures (BLAKE3 over a canonical, versioned encoding), with input
//!   files hashed in parallel through a [`statcache::StatCache`], and paths rewritten by a
//!   [`normalize::PathNormalizer`] first.
//! - [`entry`]: the versioned entry (manifest) format.
//! - [`store`]: the [`Store`] contract every backend implements: async, object-safe, streaming.
//! - [`layer`]: behaviour that composes over any store (tiers, best effort, retry, admission,
//!   read-only, progress), each written once as a [`layer::Layered`] wrapper.
//! - [`artifacts`]: turning files on disk into entries and back, atomically, confined to the
//!   declared outputs beneath the build root.
//! - [`error`]: classified errors.
//! - [`eviction`], [`admission`]: the seams eviction and admission policies plug into.
//! - [`trace`]: access traces for the policy simulator.
#![cfg_attr(
    feature = "testkit",
    doc = "- [`testkit`]: the conformance suite every store must pass."
)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod admission;
pub mod artifacts;
mod beneath;
pub mod digest;
pub mod entry;
pub mod error;
pub mod eviction;
pub mod key;
pub mod layer;
pub mod normalize;
pub mod signature;
pub mod size;
pub mod statcache;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace;
pub mod unnamed;
pub mod verify;

pub use digest::{Digest, HashFn};
pub use entry::{Content, Entry, Output, OutputKind};
pub use error::{Error, ErrorKind, Result};
pub use key::Key;
pub use store::{
    BlobRead, ByteStream, Capability, EntryMeta, GetOptions, Placement, PutMode, PutOptions,
    PutOutcome, Store, StoreExt, StoreStats, TrimOptions, TrimReport, VerifiedFile,
};

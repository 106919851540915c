//! Larder's task-cache flow, written once for every front-end: `larder exec`, `get`, `put`, the
//! worker's protocols (JSON lines and wafcache) and the benchmarks call this crate, and only
//! parse their input and word their output themselves.
//!
//! The flow, and where each step lives:
//! - [`sign`](mod@sign): a [`Task`]'s input files hashed through the stat cache
//!   ([`Task::hash_inputs`]), then its key ([`Task::sign`]) over the command, chosen environment
//!   variables, inputs, output names and salt, through a path normalizer. Signing needs no
//!   store: a front-end signs even when the store cannot be opened.
//! - [`Cache`] (`cache`): the store (`Arc<dyn Store>`, any layer stack) and what the flow
//!   needs: inline limit, placement, the symlink rule, the admission policy, the trim budget,
//!   and a [`Progress`] that shows long transfers (a progress bar: the library prints
//!   nothing itself).
//! - `restore`: [`Cache::lookup`] (an entry cut down to the files asked for, [`Lookup`]),
//!   [`Cache::restore`] (the confined restore of `larder_core::artifacts`: only declared
//!   outputs, beneath the root; a poisoned entry is removed with a warning) and [`Cache::hit`]
//!   (a task's hit: entry, captured streams, restore, in one call).
//! - `store`: [`Cache::collect`] (outputs read into an entry, [`Prepared`]), then
//!   [`Cache::put`] (captured streams, blobs, the entry last) or [`Cache::queue`] (the same in
//!   the background); both ask the admission policy first ([`Stored`], [`Queued`]).
//!   [`Cache::trim_if_over`] trims when a budget is exceeded.
//! - [`uploads`]: the upload queue ([`Uploads`], [`Done`]): N uploads at a time, waited for or
//!   abandoned at the end.
//! - [`error`]: [`Error`], one variant per step, each over the `larder_core::Error` beneath.
//!
//! What stays in the front-ends: expanding input globs, loading policies (WebAssembly) and the
//! configuration, running the command, the wire protocols, and every message a user reads.
//! Below this crate, `larder_core` has the entry format, the store contract and its layers,
//! `larder_core::artifacts` the file work (collect, confined restore, store), and
//! `larder_core::signature` the signature encoding.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod cache;
pub mod error;
mod restore;
pub mod sign;
mod store;
pub mod uploads;

pub use cache::{Cache, Progress, Transfer};
pub use error::{Error, Result};
pub use larder_core::artifacts::{Declared, Restore};
pub use restore::{Hit, Lookup};
pub use sign::{Input, Task};
pub use store::{Prepared, Queued, Stored, Streams};
pub use uploads::{Done, Uploads};

#[cfg(test)]
mod tests;

//! Larder's policy host: eviction, admission and path-normalization policies as WebAssembly
//! components (the contract is `policies/wit/policy.wit`), run sandboxed in wasmtime.
//!
//! - One [`wasmtime::Engine`] for the process; components are compiled once and cached on disk
//!   ([`PolicyHost::with_cache_dir`]), keyed by the wasm's hash and the engine's compatibility
//!   hash, and pre-instantiated.
//! - Guests import nothing. Every call has a time budget (epoch interruption) and a memory cap
//!   (growing past it traps): see [`Limits`].
//! - A guest that traps, overruns or answers nonsense is dropped and re-instantiated on the next
//!   call (a stateful eviction policy gets its entries replayed); after
//!   [`MAX_CONSECUTIVE_FAILURES`] failures in a row it is disabled with one warning naming it.
//!   Meanwhile eviction falls back to native LRU, admission admits, and normalization fails
//!   closed (the task is not cached).
//!
//! ```no_run
//! use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy};
//! use larder_policy::PolicyHost;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PolicyHost::new().with_cache_dir("/var/cache/larder/policies");
//! let gdsf = host.eviction("target/policies/gdsf.wasm".as_ref(), "")?;
//! let mut c = Candidates::default();
//! c.push(1, 4096, 0, 10, 3, 1200);
//! let victims = gdsf.select_victims(&c, EvictionGoal { bytes: 1, entries: 0 }, 20)?;
//! # Ok(()) }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admission;
mod bindings;
mod engine;
mod error;
mod eviction;
mod host;
mod normalize;
mod sandbox;
pub mod sim;
#[doc(hidden)]
pub mod testing;

pub use admission::{AdmissionCandidate, WasmAdmission};
pub use engine::TICK;
pub use error::{PolicyError, Result};
pub use eviction::WasmEviction;
pub use host::{ComponentInfo, PolicyHost};
pub use normalize::{NormalizeContext, WasmNormalizer};
pub use sandbox::{Limits, MAX_CONSECUTIVE_FAILURES};

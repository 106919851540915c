//! The conformance suite every store must pass.
//!
//! A backend's test provides a [`Harness`] (the store, plus a way to damage its stored bytes and,
//! for a store that talks to a server, a way to point it at a broken endpoint). Checks are chosen
//! by the store's [`Capability`](crate::Capability): a store that cannot list is not asked to.
//!
//! Backends run the suite as separate, filterable trials, one per check (a test target with
//! `harness = false`, see [`Suites`]):
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     larder_core::testkit::Suites::from_args()
//!         .store("fs", || async { Ok(MyHarness::start()) })
//!         .run()
//! }
//! ```
//!
//! `cargo test -p my-store --test conformance -- fs::large` then runs one check. [`run_all`]
//! runs every applicable check in one test, for stacks checked inside another test.

use std::sync::Arc;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::key::Key;
use crate::store::Store;

mod checks;
pub mod endpoints;
mod memory;
mod trials;
pub use checks::*;
pub use memory::{MemoryHarness, MemoryStore};
pub use trials::{Suites, Unavailable};

/// What the suite needs from a backend's test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test. Each call may return the same store; the suite uses fresh keys.
    fn store(&self) -> Arc<dyn Store>;
    /// Damage the stored bytes of blob `digest` so they no longer verify (flip a byte, keep the
    /// length). Returns `false` when the backend gives no way to do so (the check is skipped).
    async fn corrupt_blob(&self, digest: &Digest) -> bool;
    /// Damage the stored entry under `key` so it no longer decodes. Returns `false` when the
    /// backend gives no way to do so.
    async fn corrupt_entry(&self, key: &Key) -> bool;
    /// Bytes of the large streamed blob check (1 GiB by default; `LARDER_TESTKIT_LARGE_BYTES`
    /// overrides it for quick local runs).
    fn large_blob_bytes(&self) -> u64 {
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| crate::size::parse_size(&v).ok())
            .unwrap_or(1 << 30)
    }
    /// A store of this backend that talks to `addr` instead of the real server, with time-outs
    /// short enough for a test (a few seconds). The suite points it at an address where nothing
    /// listens and at one that accepts connections and never answers
    /// ([`endpoints`]). `None` (the default): the store has no endpoint, and those checks do not
    /// apply.
    fn at_endpoint(&self, addr: std::net::SocketAddr) -> Option<Arc<dyn Store>> {
        let _ = addr;
        None
    }
}

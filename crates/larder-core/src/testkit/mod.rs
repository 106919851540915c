//! The conformance suite every store must pass.
//!
//! A backend's test provides a [`Harness`] (the store, plus a way to damage its stored bytes) and
//! calls [`run_all`]. Checks are chosen by the store's [`Capability`](crate::Capability): a store
//! that cannot list is not asked to.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     let h = MyHarness::start().await;
//!     larder_core::testkit::run_all(&h).await;
//! }
//! ```

use std::sync::Arc;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::key::Key;
use crate::store::Store;

mod checks;
mod memory;
pub use checks::*;
pub use memory::{MemoryHarness, MemoryStore};

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
}

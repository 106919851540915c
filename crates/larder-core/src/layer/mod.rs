//! Store layers: behaviour that composes, written once (DESIGN.md §4 "The store contract and its
//! layers").
//!
//! A layer is a [`Store`] wrapping a [`Store`]. It implements [`Layered`], whose methods forward
//! to [`Layered::inner`] by default, overrides only the methods it changes, and becomes a
//! [`Store`] through [`impl_store_for_layer!`](crate::impl_store_for_layer) (the shape of
//! OpenDAL's `LayeredAccess`). Layers stack by wrapping: `BestEffort::new(Retry::new(s3))`.
//!
//! Where each behaviour lives:
//! - [`ReadOnly`] ([`read_only`]): writes, deletes and trims refused with a clear error; reads
//!   unchanged; the capability drops `delete` and `trim`.
//! - [`BestEffort`] ([`best_effort`]): errors and time-outs on the build path become misses or
//!   skipped writes plus one warning per store and run; a store that times out or fails
//!   temporarily is skipped for the rest of the run, so it costs its time-out at most once.
//! - [`Retry`] ([`retry`]): exponential backoff with jitter for temporary errors, bounded in
//!   attempts and total time, on the operations that can be repeated safely.
//! - [`Admission`] ([`admit`]): entry writes asked of an
//!   [`AdmissionPolicy`](crate::admission::AdmissionPolicy) first; a refusal is not an error.
//! - [`Progress`] ([`progress`]): operations and blob bytes counted, with an optional callback
//!   per transferred chunk (progress bars).
//! - [`Tiered`] ([`tiered`]): several stores, fastest first: reads fall through and backfill the
//!   faster tiers; writes go to every tier synchronously or, for slow tiers, through an
//!   [`UploadQueue`]; per-tier hit counters. It holds many stores, so it is a [`Store`] itself
//!   rather than a [`Layered`] wrapper.
//! - [`Namespaces`] ([`namespaces`]): the key prefixes a protocol owns keep its invariant
//!   (`bazel-cas/<sha256>` holds bytes of that SHA-256, ...) whichever protocol writes them.
//! - [`Signed`] and [`Trusted`] ([`trust`]): entries signed with an ed25519 key on the way in;
//!   entries no trusted key signed are misses on the way out (and, on a server, refused on the
//!   way in).
//!
//! The usual remote stack is `BestEffort(Retry(remote))`: retries absorb a blip, and what is left
//! after them makes the remote a miss for the rest of the run instead of a failed build.
//!
//! Writing a layer:
//! ```
//! use async_trait::async_trait;
//! use larder_core::layer::Layered;
//! use larder_core::{Entry, GetOptions, Key, Result, Store};
//!
//! /// Logs every entry lookup.
//! #[derive(Debug)]
//! struct Logged<S>(S);
//!
//! impl<S: Store> std::fmt::Display for Logged<S> {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         std::fmt::Display::fmt(&self.0, f)
//!     }
//! }
//!
//! #[async_trait]
//! impl<S: Store> Layered for Logged<S> {
//!     type Inner = S;
//!     fn inner(&self) -> &S {
//!         &self.0
//!     }
//!     async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
//!         tracing::debug!("looking up {key}");
//!         self.0.get_entry_opts(key, opts).await
//!     }
//! }
//! larder_core::impl_store_for_layer!(impl<S: Store> for Logged<S>);
//! ```

use std::fmt::{Debug, Display};
use std::path::Path;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::digest::Digest;
use crate::entry::Entry;
use crate::error::Result;
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, Capability, EntryMeta, GetOptions, Placement, ProgressFn, PutOptions,
    PutOutcome, Store, StoreStats, TrimOptions, TrimReport, VerifiedFile,
};

pub mod admit;
pub mod best_effort;
pub mod namespaces;
pub mod progress;
pub mod read_only;
pub mod retry;
pub mod tiered;
pub mod trust;

#[cfg(all(test, feature = "testkit"))]
mod namespaces_tests;
#[cfg(all(test, feature = "testkit"))]
mod tests;
#[cfg(all(test, feature = "testkit"))]
mod trust_tests;

pub use admit::Admission;
pub use best_effort::{BestEffort, BestEffortConfig};
pub use namespaces::Namespaces;
pub use progress::{Progress, ProgressCounts};
pub use read_only::ReadOnly;
pub use retry::{Retry, RetryConfig};
pub use tiered::{Tier, TierStats, TierTrim, TierWrite, Tiered, UploadQueue, copy_entry};
pub use trust::{PublicKey, Signed, SigningKey, Trusted};

/// What the layer macro needs from outside the crate.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use futures::stream::BoxStream;
}

/// A store wrapping another, forwarding every [`Store`] method to [`inner`](Layered::inner)
/// unless it overrides it.
///
/// Implement it, override what the layer changes, and call
/// [`impl_store_for_layer!`](crate::impl_store_for_layer) to make the type a [`Store`]. The
/// forwarding costs one call per layer and operation (each `async_trait` method boxes its
/// future, as every store call already does).
///
/// Method names are those of [`Store`]; inside a layer, call the inner store's methods on
/// `self.inner()` (a `Store`), never on `self`, which would be ambiguous between the two traits.
#[async_trait]
pub trait Layered: Display + Debug + Send + Sync + 'static {
    /// The wrapped store (`S`, `Arc<dyn Store>`, ...).
    type Inner: Store + ?Sized;

    /// The wrapped store.
    fn inner(&self) -> &Self::Inner;

    /// See [`Store::capability`].
    fn capability(&self) -> Capability {
        Store::capability(self.inner())
    }
    /// See [`Store::get_entry_opts`].
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        Store::get_entry_opts(self.inner(), key, opts).await
    }
    /// See [`Store::put_entry_opts`].
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        Store::put_entry_opts(self.inner(), key, entry, opts).await
    }
    /// See [`Store::get_blob`].
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        Store::get_blob(self.inner(), digest).await
    }
    /// See [`Store::put_blob`].
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        Store::put_blob(self.inner(), digest, size, payload).await
    }
    /// See [`Store::put_blob_file`]. A layer that changes [`Layered::put_blob`] changes this
    /// too: forwarded, the file reaches the inner store without passing through `put_blob`.
    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        Store::put_blob_file(self.inner(), digest, file).await
    }
    /// See [`Store::place_blob`].
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        Store::place_blob(self.inner(), digest, dest, how).await
    }
    /// See [`Store::find_missing`].
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        Store::find_missing(self.inner(), digests).await
    }
    /// See [`Store::find_missing_entries`].
    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        Store::find_missing_entries(self.inner(), keys).await
    }
    /// See [`Store::delete`].
    async fn delete(&self, key: &Key) -> Result<bool> {
        Store::delete(self.inner(), key).await
    }
    /// See [`Store::list`].
    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        Store::list(self.inner())
    }
    /// See [`Store::stats`].
    async fn stats(&self) -> Result<StoreStats> {
        Store::stats(self.inner()).await
    }
    /// See [`Store::trim`].
    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        Store::trim(self.inner(), opts, progress).await
    }
    /// See [`Store::flush`].
    async fn flush(&self) -> Result<()> {
        Store::flush(self.inner()).await
    }
}

/// Make a [`Layered`] type a [`Store`]: every method goes to the type's [`Layered`] method
/// (its override, or the default that forwards to the inner store).
///
/// ```ignore
/// larder_core::impl_store_for_layer!(MyLayer);
/// larder_core::impl_store_for_layer!(impl<S: Store> for MyLayer<S>);
/// ```
///
/// (A blanket `impl<L: Layered> Store for L` would collide with `Store for Box<T>`: `Box` is a
/// fundamental type, so another crate could make `Box<Its>` a `Layered`.)
#[macro_export]
macro_rules! impl_store_for_layer {
    (impl<$($g:ident $(: $bound:path)?),+> for $ty:ty) => {
        $crate::impl_store_for_layer!(@impl [$($g $(: $bound)?),+] $ty);
    };
    ($ty:ty) => {
        $crate::impl_store_for_layer!(@impl [] $ty);
    };
    (@impl [$($generics:tt)*] $ty:ty) => {
        #[$crate::layer::__private::async_trait]
        impl<$($generics)*> $crate::Store for $ty {
            fn capability(&self) -> $crate::Capability {
                <Self as $crate::layer::Layered>::capability(self)
            }
            async fn get_entry_opts(
                &self,
                key: &$crate::Key,
                opts: $crate::GetOptions,
            ) -> $crate::Result<::std::option::Option<$crate::Entry>> {
                <Self as $crate::layer::Layered>::get_entry_opts(self, key, opts).await
            }
            async fn put_entry_opts(
                &self,
                key: &$crate::Key,
                entry: &$crate::Entry,
                opts: $crate::PutOptions,
            ) -> $crate::Result<$crate::PutOutcome> {
                <Self as $crate::layer::Layered>::put_entry_opts(self, key, entry, opts).await
            }
            async fn get_blob(
                &self,
                digest: &$crate::Digest,
            ) -> $crate::Result<::std::option::Option<$crate::BlobRead>> {
                <Self as $crate::layer::Layered>::get_blob(self, digest).await
            }
            async fn put_blob(
                &self,
                digest: &$crate::Digest,
                size: u64,
                payload: $crate::ByteStream,
            ) -> $crate::Result<$crate::PutOutcome> {
                <Self as $crate::layer::Layered>::put_blob(self, digest, size, payload).await
            }
            async fn put_blob_file(
                &self,
                digest: &$crate::Digest,
                file: $crate::VerifiedFile,
            ) -> $crate::Result<$crate::PutOutcome> {
                <Self as $crate::layer::Layered>::put_blob_file(self, digest, file).await
            }
            async fn place_blob(
                &self,
                digest: &$crate::Digest,
                dest: &::std::path::Path,
                how: $crate::Placement,
            ) -> $crate::Result<bool> {
                <Self as $crate::layer::Layered>::place_blob(self, digest, dest, how).await
            }
            async fn find_missing(
                &self,
                digests: &[$crate::Digest],
            ) -> $crate::Result<::std::vec::Vec<$crate::Digest>> {
                <Self as $crate::layer::Layered>::find_missing(self, digests).await
            }
            async fn find_missing_entries(
                &self,
                keys: &[$crate::Key],
            ) -> $crate::Result<::std::vec::Vec<$crate::Key>> {
                <Self as $crate::layer::Layered>::find_missing_entries(self, keys).await
            }
            async fn delete(&self, key: &$crate::Key) -> $crate::Result<bool> {
                <Self as $crate::layer::Layered>::delete(self, key).await
            }
            fn list(
                &self,
            ) -> $crate::layer::__private::BoxStream<'static, $crate::Result<$crate::EntryMeta>> {
                <Self as $crate::layer::Layered>::list(self)
            }
            async fn stats(&self) -> $crate::Result<$crate::StoreStats> {
                <Self as $crate::layer::Layered>::stats(self).await
            }
            async fn trim(
                &self,
                opts: &$crate::TrimOptions,
                progress: ::std::option::Option<$crate::store::ProgressFn>,
            ) -> $crate::Result<$crate::TrimReport> {
                <Self as $crate::layer::Layered>::trim(self, opts, progress).await
            }
            async fn flush(&self) -> $crate::Result<()> {
                <Self as $crate::layer::Layered>::flush(self).await
            }
        }
    };
}

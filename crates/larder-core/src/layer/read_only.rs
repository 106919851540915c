//! The read-only layer: a store that serves reads and refuses every change.
//!
//! Writes (entries and blobs), deletes and trims return
//! [`Error::NotSupported`](crate::Error::NotSupported) naming the store and saying it is
//! read-only; reads, listing, statistics and flushes (which persist access times, not content)
//! reach the inner store unchanged. The capability drops `delete` and `trim` so callers can tell
//! up front. Used for caches a run may read but must not fill (a shared remote on developer
//! machines, `--read-only`).

use std::fmt;

use async_trait::async_trait;

use super::Layered;
use crate::digest::Digest;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    ByteStream, Capability, ProgressFn, PutOptions, PutOutcome, Store, TrimOptions, TrimReport,
    VerifiedFile,
};

/// `S`, with every change refused.
#[derive(Debug)]
pub struct ReadOnly<S> {
    inner: S,
}

impl<S: Store> ReadOnly<S> {
    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner`, read-only.
    pub fn new(inner: S) -> Self {
        ReadOnly { inner }
    }

    /// The wrapped store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn refuse(&self, operation: &'static str) -> Error {
        Error::NotSupported {
            store: self.inner.to_string(),
            operation,
        }
    }
}

impl<S: Store> fmt::Display for ReadOnly<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (read-only)", self.inner)
    }
}

#[async_trait]
impl<S: Store> Layered for ReadOnly<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn capability(&self) -> Capability {
        let mut cap = self.inner.capability();
        cap.delete = false;
        cap.trim = false;
        cap
    }

    async fn put_entry_opts(
        &self,
        _key: &Key,
        _entry: &Entry,
        _opts: PutOptions,
    ) -> Result<PutOutcome> {
        Err(self.refuse("writing entries: it is read-only"))
    }

    async fn put_blob(
        &self,
        _digest: &Digest,
        _size: u64,
        _payload: ByteStream,
    ) -> Result<PutOutcome> {
        Err(self.refuse("writing blobs: it is read-only"))
    }

    async fn put_blob_file(&self, _digest: &Digest, _file: VerifiedFile) -> Result<PutOutcome> {
        Err(self.refuse("writing blobs: it is read-only"))
    }

    async fn delete(&self, _key: &Key) -> Result<bool> {
        Err(self.refuse("deleting entries: it is read-only"))
    }

    async fn trim(&self, _opts: &TrimOptions, _progress: Option<ProgressFn>) -> Result<TrimReport> {
        Err(self.refuse("trimming: it is read-only"))
    }
}

crate::impl_store_for_layer!(impl<S: Store> for ReadOnly<S>);

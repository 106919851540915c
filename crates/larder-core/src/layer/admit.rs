//! The admission layer: entry writes pass an [`AdmissionPolicy`] first.
//!
//! A refused entry is not written and not an error: the write reports
//! [`PutOutcome::Written`] (the cache may drop any entry at any time anyway), the refusal is
//! counted ([`Admission::refused`]) and handed to an optional callback (the server's metrics).
//! Blobs are not asked about: they arrive before the entry that names them, and a trim reclaims
//! those no entry names. Everything else forwards unchanged. The WebAssembly and native policies
//! (`larder-policy`) plug in through the same trait.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::Layered;
use crate::admission::{AdmissionCandidate, AdmissionPolicy};
use crate::entry::{Entry, now_ms};
use crate::error::Result;
use crate::key::Key;
use crate::store::{PutOptions, PutOutcome, Store};

/// Called with each refused entry's key and candidate.
pub type RefusedFn = Arc<dyn Fn(&Key, AdmissionCandidate) + Send + Sync>;

/// `S`, storing only the entries `policy` admits.
pub struct Admission<S> {
    inner: S,
    policy: Arc<dyn AdmissionPolicy>,
    on_refused: Option<RefusedFn>,
    refused: AtomicU64,
    refused_bytes: AtomicU64,
}

impl<S: Store> fmt::Debug for Admission<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Admission<S> {
    /// The wrapped store (an inherent method: no ambiguity with [`Layered::inner`]).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner`, asking `policy` before each entry write.
    pub fn new(inner: S, policy: Arc<dyn AdmissionPolicy>) -> Self {
        Admission {
            inner,
            policy,
            on_refused: None,
            refused: AtomicU64::new(0),
            refused_bytes: AtomicU64::new(0),
        }
    }

    /// Also call `f` for each refused entry.
    pub fn on_refused(mut self, f: RefusedFn) -> Self {
        self.on_refused = Some(f);
        self
    }

    /// Entries refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Output bytes of the entries refused so far.
    pub fn refused_bytes(&self) -> u64 {
        self.refused_bytes.load(Ordering::Relaxed)
    }
}

impl<S: Store> fmt::Display for Admission<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl<S: Store> Layered for Admission<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let candidate = AdmissionCandidate::of(entry);
        if self.policy.admit(candidate, now_ms()) {
            return self.inner.put_entry_opts(key, entry, opts).await;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.refused_bytes
            .fetch_add(candidate.size, Ordering::Relaxed);
        if let Some(f) = &self.on_refused {
            f(key, candidate);
        }
        tracing::debug!(
            "{}: admission policy {} refused {key} ({} bytes)",
            self.inner,
            self.policy.name(),
            candidate.size
        );
        Ok(PutOutcome::Written)
    }
}

crate::impl_store_for_layer!(impl<S: Store> for Admission<S>);

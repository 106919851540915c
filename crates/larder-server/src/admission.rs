//! Admission on put: a [`Store`] wrapper that asks the configured [`AdmissionPolicy`] before
//! writing an entry, whichever protocol the entry arrived by.
//!
//! A refused entry is not written and not an error: the client is told it was stored (the
//! cache may drop any entry at any time anyway), and the refusal is counted in the metrics.
//! Blobs the entry named have already arrived by then; a trim reclaims them like any blob no
//! entry names.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use larder_core::admission::{AdmissionCandidate, AdmissionPolicy};
use larder_core::entry::now_ms;
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};

use crate::metrics::Metrics;

/// `inner`, with every entry put passed by `policy` first.
#[derive(Debug)]
pub(crate) struct Admitted {
    inner: Arc<dyn Store>,
    policy: Arc<dyn AdmissionPolicy>,
    metrics: Arc<Metrics>,
}

impl Admitted {
    pub(crate) fn new(
        inner: Arc<dyn Store>,
        policy: Arc<dyn AdmissionPolicy>,
        metrics: Arc<Metrics>,
    ) -> Admitted {
        Admitted {
            inner,
            policy,
            metrics,
        }
    }
}

impl fmt::Display for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for Admitted {
    fn capability(&self) -> Capability {
        self.inner.capability()
    }
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        self.inner.get_entry_opts(key, opts).await
    }
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let candidate = AdmissionCandidate::of(entry);
        if !self.policy.admit(candidate, now_ms()) {
            self.metrics.refused(candidate.size);
            tracing::debug!(
                "larder-server: admission policy {} refused {key} ({} bytes)",
                self.policy.name(),
                candidate.size
            );
            return Ok(PutOutcome::Written);
        }
        self.inner.put_entry_opts(key, entry, opts).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        self.inner.get_blob(digest).await
    }
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        self.inner.put_blob(digest, size, payload).await
    }
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        self.inner.place_blob(digest, dest, how).await
    }
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.inner.find_missing(digests).await
    }
    async fn delete(&self, key: &Key) -> Result<bool> {
        self.inner.delete(key).await
    }
    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        self.inner.list()
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        self.inner.trim(opts, progress).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

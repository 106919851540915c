//! An in-memory reference store: the smallest correct implementation of the contract, used to
//! test the suite itself and as an example for backend authors. Not for production (it holds
//! blobs in memory by definition).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::digest::{Digest, DigestWriter};
use crate::entry::{Entry, now_ms};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    BlobRead, ByteStream, Capability, EntryMeta, GetOptions, ProgressFn, PutMode, PutOptions,
    PutOutcome, Store, StoreStats, TrimOptions, TrimReport,
};

/// A store that keeps everything in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Vec<u8>>,
    blobs: HashMap<Digest, Bytes>,
    stats: StoreStats,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| Error::Store {
            store: "memory".into(),
            message: "lock poisoned".into(),
            temporary: false,
            source: None,
        })
    }

    /// Flip a byte of a stored blob (for the corruption checks).
    pub fn corrupt_blob(&self, digest: &Digest) -> bool {
        let Ok(mut inner) = self.lock() else {
            return false;
        };
        let Some(b) = inner.blobs.get_mut(digest) else {
            return false;
        };
        let mut v = b.to_vec();
        if v.is_empty() {
            return false;
        }
        let mid = v.len() / 2;
        v[mid] ^= 0x55;
        *b = Bytes::from(v);
        true
    }

    /// Replace a stored entry by garbage.
    pub fn corrupt_entry(&self, key: &Key) -> bool {
        let Ok(mut inner) = self.lock() else {
            return false;
        };
        match inner.entries.get_mut(&key.storage_name()) {
            Some(e) => {
                *e = b"LRDE\x01\x00garbage".to_vec();
                true
            }
            None => false,
        }
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory")
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capability(&self) -> Capability {
        Capability {
            list: true,
            delete: true,
            hit_stats: true,
            sha256: true,
            ..Capability::none()
        }
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let mut inner = self.lock()?;
        let name = key.storage_name();
        let decoded = inner.entries.get(&name).map(|b| Entry::decode(b));
        let found = match decoded {
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => {
                inner.entries.remove(&name);
                None
            }
            None => None,
        };
        if opts.record_access {
            match &found {
                Some(e) => {
                    inner.stats.hits += 1;
                    inner.stats.bytes_saved += e.total_size();
                    inner.stats.ms_saved += e.cost_ms;
                }
                None => inner.stats.misses += 1,
            }
        }
        Ok(found)
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let bytes = entry.encode()?;
        let mut inner = self.lock()?;
        let name = key.storage_name();
        if opts.mode == PutMode::Create && inner.entries.contains_key(&name) {
            return Ok(PutOutcome::Exists);
        }
        inner.entries.insert(name, bytes);
        Ok(PutOutcome::Written)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let Some(bytes) = self.lock()?.blobs.get(digest).cloned() else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        if digest.func().digest(&bytes) != *digest {
            self.lock()?.blobs.remove(digest);
            let err = Error::corrupt(format!("blob {digest}"), "bytes do not match the digest");
            return Ok(Some(BlobRead {
                size,
                stream: Box::pin(futures::stream::iter([Ok(bytes), Err(err)])),
            }));
        }
        Ok(Some(BlobRead {
            size,
            stream: Box::pin(futures::stream::once(async { Ok(bytes) })),
        }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut payload: ByteStream,
    ) -> Result<PutOutcome> {
        if self.lock()?.blobs.contains_key(digest) {
            return Ok(PutOutcome::Exists);
        }
        let mut buf = Vec::new();
        let mut h = DigestWriter::for_digest(digest);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            h.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        if h.finish() != *digest || buf.len() as u64 != size {
            return Err(Error::invalid(format!(
                "blob does not match its digest {digest} and size {size}"
            )));
        }
        self.lock()?.blobs.insert(*digest, Bytes::from(buf));
        Ok(PutOutcome::Written)
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let inner = self.lock()?;
        Ok(digests
            .iter()
            .filter(|d| !inner.blobs.contains_key(d))
            .copied()
            .collect())
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        Ok(self.lock()?.entries.remove(&key.storage_name()).is_some())
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        let metas: Vec<Result<EntryMeta>> = match self.lock() {
            Err(e) => vec![Err(e)],
            Ok(inner) => inner
                .entries
                .iter()
                .filter_map(|(name, b)| {
                    let e = Entry::decode(b).ok()?;
                    Some(Ok(EntryMeta {
                        name: name.clone(),
                        size: b.len() as u64,
                        created_ms: e.created_ms,
                        last_access_ms: now_ms(),
                        hits: 0,
                        cost_ms: e.cost_ms,
                    }))
                })
                .collect(),
        };
        Box::pin(futures::stream::iter(metas))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let inner = self.lock()?;
        let mut s = inner.stats.clone();
        s.entries = inner.entries.len() as u64;
        s.bytes = inner.entries.values().map(|b| b.len() as u64).sum::<u64>()
            + inner.blobs.values().map(|b| b.len() as u64).sum::<u64>();
        Ok(s)
    }

    async fn trim(&self, _opts: &TrimOptions, _progress: Option<ProgressFn>) -> Result<TrimReport> {
        Err(Error::NotSupported {
            store: "memory".into(),
            operation: "trim",
        })
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// A [`Harness`](super::Harness) around a [`MemoryStore`].
#[derive(Debug, Default)]
pub struct MemoryHarness {
    store: std::sync::Arc<MemoryStore>,
}

impl MemoryHarness {
    /// A harness over a new, empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl super::Harness for MemoryHarness {
    fn store(&self) -> std::sync::Arc<dyn Store> {
        self.store.clone()
    }
    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.store.corrupt_blob(digest)
    }
    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.store.corrupt_entry(key)
    }
    fn large_blob_bytes(&self) -> u64 {
        // Holding blobs in memory is this store's nature; keep its large check small.
        64 << 20
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread")]
    async fn the_suite_passes_on_the_reference_store() {
        super::super::run_all(&super::MemoryHarness::new()).await;
    }
}

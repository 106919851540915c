//! What the OpenDAL store's tests share: a conformance harness that damages stored objects
//! through the store's own OpenDAL operator.

#![allow(dead_code)]

#[cfg(feature = "services-azblob")]
pub mod azurite;
pub mod trim;

use std::sync::Arc;

use async_trait::async_trait;
use larder_core::testkit::Harness;
use larder_core::{Digest, Key, Store};
use larder_opendal::OpendalStore;

pub struct OpendalHarness {
    store: Arc<OpendalStore>,
}

impl OpendalHarness {
    pub fn new(store: Arc<OpendalStore>) -> Self {
        OpendalHarness { store }
    }

    /// Flip bytes of `path` behind the store's back (through its own operator, which reaches
    /// the same objects): `false` when there is no such object.
    async fn damage(&self, path: &str) -> bool {
        let op = self.store.operator();
        let Ok(buf) = op.read(path).await else {
            return false;
        };
        let mut bytes = buf.to_vec();
        if bytes.is_empty() {
            return false;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        bytes[0] ^= 0xff;
        op.write(path, bytes).await.expect("overwrite");
        true
    }
}

#[async_trait]
impl Harness for OpendalHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        // A blob stored whole, else the first part of one stored in parts.
        self.damage(&OpendalStore::blob_path(digest)).await
            || self.damage(&OpendalStore::part_path(digest, 0)).await
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.damage(&OpendalStore::entry_path(key)).await
    }

    fn large_blob_bytes(&self) -> u64 {
        // 256 MiB still catches any store that buffers a whole blob, and keeps CI quick.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }
}

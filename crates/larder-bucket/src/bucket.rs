//! [`Bucket`]: the object primitives a trim needs, and [`Listed`], one object of a listing.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use larder_core::eviction::EvictionPolicy;
use larder_core::{EntryMeta, PutOutcome, Result};

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The object's full key (name) in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its last modification, in ms since the Unix epoch.
    pub modified_ms: u64,
    /// What changes when the object is rewritten: the ETag on S3, the generation on GCS.
    pub version: String,
}

impl Listed {
    /// The last segment of the key (an entry's storage name, a blob's digest).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }
}

/// A store laid out in a bucket: `PREFIX/entries/<storage name>`, `PREFIX/blobs/<blake3>`,
/// `PREFIX/access/…` (access records) and `PREFIX/trim/…` (the trim's lease and index).
///
/// # Contract
/// - Keys passed in are full object keys (they already start with [`Bucket::prefix`]).
/// - `get`/`version` MUST answer `Ok(None)` for an object that does not exist.
/// - `put` with `create` MUST NOT overwrite an existing object, and answers
///   [`PutOutcome::Exists`] then (checking first where the service has no create-only write).
/// - `delete` MUST succeed for an object that does not exist.
/// - `delete_if_version` MUST delete only if the object's version is still `version`, and
///   answer whether it deleted.
/// - Errors MUST be classified (temporary or permanent) as for the store's other operations.
#[async_trait]
pub trait Bucket: fmt::Display + Send + Sync {
    /// The store's prefix in the bucket: empty, or ending with `/`.
    fn prefix(&self) -> &str;

    /// Requests a fan-out operation keeps in flight.
    fn concurrency(&self) -> usize;

    /// The eviction policy trims use.
    fn eviction_policy(&self) -> &dyn EvictionPolicy;

    /// How old an unreferenced blob must be before a trim deletes it.
    fn trim_grace(&self) -> Duration;

    /// Every object whose key starts with `prefix`, page by page.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>>;

    /// An entry's metadata from its listing (and, if the listing lacks it, a metadata request);
    /// `None` if it is gone.
    async fn entry_meta(&self, listed: &Listed) -> Result<Option<EntryMeta>>;

    /// A small object's bytes.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Store a small object; with `create`, only if absent.
    async fn put(&self, key: &str, body: Bytes, create: bool) -> Result<PutOutcome>;

    /// Delete an object (absent is fine).
    async fn delete(&self, key: &str) -> Result<()>;

    /// Delete an object only if it is still at `version`: `false` if it changed or is gone.
    async fn delete_if_version(&self, key: &str, version: &str) -> Result<bool>;

    /// `PREFIX/entries/`.
    fn entries_prefix(&self) -> String {
        format!("{}entries/", self.prefix())
    }

    /// `PREFIX/blobs/`.
    fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.prefix())
    }
}

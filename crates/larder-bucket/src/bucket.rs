//! [`Bucket`]: the object primitives a backend supplies, and [`Listed`], one object as a listing
//! or a metadata request sees it.

use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use larder_core::{ByteStream, Error, PutOutcome, Result};

use crate::settings::BucketSettings;

/// One object of a listing (or of a metadata request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// The object's full key (name) in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its last modification, in ms since the Unix epoch.
    pub modified_ms: u64,
    /// What changes when the object is rewritten: the ETag on S3, the generation on GCS.
    pub version: String,
    /// The object's user metadata, where the answer carried it (empty otherwise).
    pub metadata: Vec<(String, String)>,
}

impl Listed {
    /// The last segment of the key (an entry's storage name, a blob's digest).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }

    /// A metadata value parsed as a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.metadata
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// How [`Bucket::put`] stores a small object.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutObject<'a> {
    /// Only if absent: [`PutOutcome::Exists`] when it is there.
    pub create: bool,
    /// User metadata, for services that keep it ([`Features::metadata`]).
    pub metadata: &'a [(&'a str, String)],
}

impl PutObject<'_> {
    /// A create-only write without metadata.
    pub fn create_only() -> Self {
        PutObject {
            create: true,
            metadata: &[],
        }
    }
}

/// What a backend's service can do beyond the primitives every backend has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Objects keep user metadata (entries' size, creation time and cost ride on them, so a
    /// listing needs no download). Without it, listing reads and decodes each entry.
    pub metadata: bool,
    /// Objects can be listed.
    pub list: bool,
    /// Objects can be deleted.
    pub delete: bool,
    /// One object can be written in several requests (multipart, resumable or block uploads,
    /// a file): `put_stream` streams a blob into one object. Without it, wrap the bucket in
    /// [`InParts`](crate::InParts), which stores large blobs in parts.
    pub multi_write: bool,
    /// Create-only writes are native (a precondition the service checks). Without them,
    /// [`Bucket::put`] asks for the object's metadata first.
    pub create_only: bool,
    /// Why the store cannot be trimmed, beyond listing and deleting (which
    /// [`why_no_trim`](Self::why_no_trim) checks), if it cannot.
    pub no_trim: Option<&'static str>,
}

impl Features {
    /// Why the store cannot be trimmed, if it cannot: a trim must list every entry and blob,
    /// and delete, besides [`no_trim`](Self::no_trim).
    pub fn why_no_trim(&self) -> Option<&'static str> {
        if !self.list {
            Some(
                "trim (a trim must see every entry and blob, and this store cannot list, or listing is off; use the service's own expiry rules)",
            )
        } else if !self.delete {
            Some("trim (the service cannot delete objects)")
        } else {
            self.no_trim
        }
    }
}

impl Default for Features {
    fn default() -> Self {
        Features {
            metadata: true,
            list: true,
            delete: true,
            multi_write: true,
            create_only: true,
            no_trim: None,
        }
    }
}

/// The object primitives of one service. [`crate::BucketStore`] implements larder's whole
/// [`Store`](larder_core::Store) contract over them, once for every object service.
///
/// # Contract
/// - Keys passed in are full object keys (they start with the settings' prefix).
/// - `head`, `get` and `read` MUST answer `Ok(None)` for an object that does not exist.
/// - `get` MUST NOT hold more than `limit` bytes: a larger object is [`Error::TooLarge`]
///   ([`within`](crate::error::within) checks a size known up front).
/// - `read`'s chunks MUST each arrive within the service's read time-out (a stalled body is a
///   temporary error); the bytes are verified by the caller.
/// - `put_object` with `create` (asked only where [`Features::create_only`]) MUST NOT overwrite
///   an existing object, and answers [`PutOutcome::Exists`] then.
/// - `put_stream` MUST publish nothing when the body yields an error (the caller's stream
///   fails when the bytes do not match their digest), and return that error.
/// - `delete` MUST succeed for an object that does not exist.
/// - `delete_if_version` MUST delete only if the object's version is still `version`, and
///   answer whether it deleted.
/// - Errors MUST be classified (temporary or permanent).
#[async_trait]
pub trait Bucket: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Prefix, fan-out, eviction policy, grace period, single-request size.
    fn settings(&self) -> &BucketSettings;

    /// What the service can do beyond the primitives.
    fn features(&self) -> Features {
        Features::default()
    }

    /// Every object whose key starts with `prefix`, page by page.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed>>;

    /// An object's size, time, version and (where kept) metadata.
    async fn head(&self, key: &str) -> Result<Option<Listed>>;

    /// An object as a stream: its size and its (unverified) chunks.
    async fn read(&self, key: &str) -> Result<Option<(u64, ByteStream)>>;

    /// A small object's bytes, at most `limit` of them. The default reads its chunks
    /// ([`read_chunks`](Self::read_chunks)) and stops past the limit.
    async fn get(&self, key: &str, limit: u64) -> Result<Option<Bytes>> {
        let Some(mut chunks) = self.read_chunks(key).await? else {
            return Ok(None);
        };
        let mut buf = BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                // Deleted while it was read.
                Err(Error::NotFound { .. }) => return Ok(None),
                chunk => buf.extend_from_slice(&chunk?),
            }
            if buf.len() as u64 > limit {
                // Its whole size for the message; what was read if the metadata request fails.
                let head = self.head(key).await.ok().flatten();
                let size = head.map_or(buf.len() as u64, |h| h.size);
                return Err(Error::TooLarge {
                    what: key.to_owned(),
                    size,
                    limit,
                });
            }
        }
        Ok(Some(buf.freeze()))
    }

    /// An object's chunks when the caller needs no size (the parts of a blob in parts):
    /// [`read`](Self::read)'s. A service whose `read` asks for the size first skips that here.
    async fn read_chunks(&self, key: &str) -> Result<Option<ByteStream>> {
        Ok(self.read(key).await?.map(|(_, chunks)| chunks))
    }

    /// Store a small object in one request, with user metadata; with `create`, only if absent:
    /// natively where the service can ([`Features::create_only`]), else after a metadata
    /// request that found it absent (a small race: two creators may both write).
    async fn put(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome> {
        let check = how.create && !self.features().create_only;
        if check && self.head(key).await?.is_some() {
            return Ok(PutOutcome::Exists);
        }
        let create = how.create && !check;
        self.put_object(key, body, PutObject { create, ..how })
            .await
    }

    /// The request under [`put`](Self::put): with `create` only where the service has native
    /// create-only writes.
    async fn put_object(&self, key: &str, body: Bytes, how: PutObject<'_>) -> Result<PutOutcome>;

    /// Store `size` bytes from `body` as one object (multipart, resumable, or in parts),
    /// publishing nothing unless the body ends cleanly.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<()>;

    /// Give an existing object a new modification time: `Ok(false)` if the service cannot
    /// (the caller then uploads it again, as it does after a failure).
    async fn refresh(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }

    /// Delete an object (absent is fine).
    async fn delete(&self, key: &str) -> Result<()>;

    /// Delete an object only if it is still at `version`: `false` if it changed or is gone.
    ///
    /// The default is a metadata request, then [`delete_at`](Self::delete_at).
    async fn delete_if_version(&self, key: &str, version: &str) -> Result<bool> {
        match self.head(key).await? {
            Some(h) if h.version == version => self.delete_at(key, version).await,
            _ => Ok(false),
        }
    }

    /// Delete an object just found at `version`, on the condition that it still is where the
    /// service can check that (`false`: it changed or went). The default deletes: a re-put
    /// since the metadata request is the (small) window left on services without a conditional
    /// delete that every implementation honours.
    async fn delete_at(&self, key: &str, _version: &str) -> Result<bool> {
        self.delete(key).await?;
        Ok(true)
    }

    /// Delete an unreferenced blob a trim found older than `cutoff_ms`, if it still is: a
    /// writer that refreshed it, or stored it again, since the trim's listing relies on it.
    /// The default is a metadata request, then [`delete_at`](Self::delete_at) its version.
    async fn delete_stale(&self, key: &str, cutoff_ms: u64) -> Result<()> {
        match self.head(key).await? {
            Some(h) if h.modified_ms < cutoff_ms => self.delete_at(key, &h.version).await.map(drop),
            _ => Ok(()),
        }
    }

    /// The store's prefix in the bucket: empty, or ending with `/`.
    fn prefix(&self) -> &str {
        &self.settings().prefix
    }

    /// `PREFIX/entries/`.
    fn entries_prefix(&self) -> String {
        format!("{}entries/", self.prefix())
    }

    /// `PREFIX/blobs/`.
    fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.prefix())
    }
}

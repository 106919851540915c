//! The CAS over a larder store, in the [layout](crate::layout) Bazel's HTTP cache shares:
//! SHA-256 objects as standalone blobs where the store holds them, else (and for what an older
//! cache wrote) as entries; BLAKE3 objects as entries, or any larder blob of that digest.

use std::collections::HashSet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use larder_core::{ByteStream, Content, Digest, GetOptions, Key, PutOptions, Store, VerifiedFile};
use tonic::Status;

use crate::digest::{BlobId, DigestFn, Hasher, hash_hex};
use crate::error::store_status;
use crate::layout::{cas_key, inlined, standalone_digest, value_entry, value_of};

/// Where a CAS object's bytes are.
pub(crate) enum Found {
    /// In memory (inline in its entry, or the empty blob).
    Inline(Bytes),
    /// A larder blob, streamed.
    Blob(larder_core::BlobRead),
}

/// The CAS: the store plus a directory for spooling uploads on the store's filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Cas {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tmp_dir: PathBuf,
}

/// The content recorded for `id`, if its entry exists and has the digest's size.
/// `record_access` refreshes the entry (for the clean-up's LRU order).
async fn content(
    store: &dyn Store,
    id: &BlobId,
    record_access: bool,
) -> Result<Option<Content>, Status> {
    if id.is_empty() {
        return Ok(Some(Content::inline(Vec::new())));
    }
    let key = cas_key(id.func, &id.hash).map_err(store_status)?;
    let mut opts = GetOptions::default();
    opts.record_access = record_access;
    let entry = store
        .get_entry_opts(&key, opts)
        .await
        .map_err(store_status)?;
    Ok(entry
        .and_then(value_of)
        .filter(|content| content.size == id.size))
}

impl Cas {
    /// The standalone blob each of `ids` is stored as, if any (see [`standalone_digest`]).
    fn standalone(&self, ids: &[BlobId]) -> Vec<Option<Digest>> {
        let cap = self.store.capability();
        ids.iter()
            .map(|id| standalone_digest(cap, id.func, &id.hash))
            .collect()
    }

    /// Which of `ids` are missing (`true`), in order. Standalone blobs are asked of the store
    /// in one bulk [`Store::find_missing`]; what is not found that way, in one
    /// [`Store::find_missing_entries`] for its entry (the layout written before standalone
    /// blobs, or the only one where the store holds none); BLAKE3 objects without an entry, in
    /// one more [`Store::find_missing`] for larder's own blob. Present ones are refreshed.
    /// Existence only: the size a digest names is checked when the object is read.
    pub(crate) async fn missing(&self, ids: &[BlobId]) -> Result<Vec<bool>, Status> {
        let standalone = self.standalone(ids);
        let blobs: Vec<Digest> = standalone.iter().flatten().copied().collect();
        let absent: HashSet<Digest> = if blobs.is_empty() {
            HashSet::new()
        } else {
            let found = self.store.find_missing(&blobs).await;
            found.map_err(store_status)?.into_iter().collect()
        };
        let mut rest = Vec::new();
        let mut keys = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if id.is_empty() || standalone[i].is_some_and(|d| !absent.contains(&d)) {
                continue;
            }
            rest.push(i);
            keys.push(cas_key(id.func, &id.hash).map_err(store_status)?);
        }
        let mut missing = vec![false; ids.len()];
        if keys.is_empty() {
            return Ok(missing);
        }
        let absent: HashSet<Key> = self
            .store
            .find_missing_entries(&keys)
            .await
            .map_err(store_status)?
            .into_iter()
            .collect();
        let mut own = Vec::new();
        for (i, key) in rest.into_iter().zip(&keys) {
            if !absent.contains(key) {
                continue;
            }
            missing[i] = true;
            if ids[i].func == DigestFn::Blake3
                && let Ok(d) = Digest::from_hex(&ids[i].hash)
            {
                own.push((i, d));
            }
        }
        if !own.is_empty() {
            let digests: Vec<Digest> = own.iter().map(|(_, d)| *d).collect();
            let found = self.store.find_missing(&digests).await;
            let absent: HashSet<Digest> = found.map_err(store_status)?.into_iter().collect();
            for (i, d) in own {
                missing[i] = absent.contains(&d);
            }
        }
        Ok(missing)
    }

    /// Whether `id` is present (refreshing it).
    pub(crate) async fn contains(&self, id: &BlobId) -> Result<bool, Status> {
        Ok(!self.missing(std::slice::from_ref(id)).await?[0])
    }

    /// Open blob `digest` if the store has it with `id`'s size.
    async fn open_blob(&self, digest: &Digest, id: &BlobId) -> Result<Option<Found>, Status> {
        match self.store.get_blob(digest).await {
            Ok(Some(read)) if read.size == id.size => Ok(Some(Found::Blob(read))),
            Ok(_) => Ok(None),
            Err(e) => Err(store_status(e)),
        }
    }

    /// Open `id` for reading; `None` when missing. Looked up as [`Cas::missing`] does: the
    /// standalone blob, the entry, larder's own blob (BLAKE3).
    pub(crate) async fn open(&self, id: &BlobId) -> Result<Option<Found>, Status> {
        if !id.is_empty()
            && let Some(d) = self.standalone(std::slice::from_ref(id))[0]
            && let Some(found) = self.open_blob(&d, id).await?
        {
            return Ok(Some(found));
        }
        let Some(content) = content(&*self.store, id, true).await? else {
            if id.func == DigestFn::Blake3
                && let Ok(d) = Digest::from_hex(&id.hash)
            {
                return self.open_blob(&d, id).await;
            }
            return Ok(None);
        };
        if let Some(bytes) = content.inline {
            return Ok(Some(Found::Inline(Bytes::from(bytes.into_vec()))));
        }
        self.open_blob(&content.digest, id).await
    }

    /// The whole of `id` in memory, if present; `limit` bounds what may be read.
    pub(crate) async fn read_small(
        &self,
        id: &BlobId,
        limit: u64,
    ) -> Result<Option<Bytes>, Status> {
        if id.size > limit {
            return Err(Status::invalid_argument(format!(
                "blob {id} is over the limit of {limit} bytes for this request"
            )));
        }
        match self.open(id).await? {
            None => Ok(None),
            Some(Found::Inline(b)) => Ok(Some(b)),
            Some(Found::Blob(read)) => {
                let mut out = Vec::with_capacity(read.size as usize);
                let mut stream = read.stream;
                while let Some(chunk) = stream.try_next().await.map_err(store_status)? {
                    out.extend_from_slice(&chunk);
                }
                Ok(Some(Bytes::from(out)))
            }
        }
    }

    /// Store `data` as `id` after checking that it hashes to it (INVALID_ARGUMENT, nothing
    /// stored, when not).
    pub(crate) async fn put_bytes(&self, id: &BlobId, data: Bytes) -> Result<(), Status> {
        check_bytes(id, &data)?;
        if id.is_empty() {
            return Ok(());
        }
        if let Some(d) = self.standalone(std::slice::from_ref(id))[0] {
            let stream: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
            self.store
                .put_blob(&d, id.size, stream)
                .await
                .map_err(store_status)?;
            return Ok(());
        }
        let content = if inlined(id.size) {
            Content::inline(data.to_vec())
        } else {
            let digest = Digest::of(&data);
            let stream: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
            self.store
                .put_blob(&digest, id.size, stream)
                .await
                .map_err(store_status)?;
            Content::blob(digest, id.size)
        };
        self.put_content(id, content).await
    }

    /// Record `content` (already stored, if a blob) as the CAS object `id`.
    async fn put_content(&self, id: &BlobId, content: Content) -> Result<(), Status> {
        let key = cas_key(id.func, &id.hash).map_err(store_status)?;
        let entry = value_entry(&key, content, "bazel-cas");
        self.store
            .put_entry_opts(&key, &entry, PutOptions::default())
            .await
            .map_err(store_status)?;
        Ok(())
    }

    /// A new, empty spool for an upload of `id`, in the spooling directory. It also computes
    /// larder's BLAKE3 digest of the bytes only where `id` is stored as an entry naming a blob
    /// of that digest (not as a standalone blob, whose store verifies it by its own digest).
    pub(crate) async fn spool(&self, id: &BlobId) -> Result<Spool, Status> {
        let standalone = self.standalone(std::slice::from_ref(id))[0].is_some();
        Spool::create(&self.tmp_dir, id, !standalone).await
    }

    /// Store a finished spool as `id` (its size and hash already checked).
    pub(crate) async fn put_spool(&self, id: &BlobId, spool: Spooled) -> Result<(), Status> {
        if id.is_empty() {
            return Ok(());
        }
        let Spooled {
            path,
            blake3,
            written,
            ..
        } = spool;
        // The spool's bytes were hashed as they arrived: a store with local files takes the
        // file as it is.
        let file = VerifiedFile::new(path.to_path_buf(), written);
        if let Some(d) = self.standalone(std::slice::from_ref(id))[0] {
            self.store
                .put_blob_file(&d, file)
                .await
                .map_err(store_status)?;
            return Ok(());
        }
        let content = if inlined(written) {
            Content::inline(tokio::fs::read(&path).await.map_err(io_status)?)
        } else {
            let Some(blake3) = blake3 else {
                return Err(Status::internal("the spool kept no BLAKE3 digest"));
            };
            let digest = Digest::from(blake3.finalize());
            self.store
                .put_blob_file(&digest, file)
                .await
                .map_err(store_status)?;
            Content::blob(digest, written)
        };
        drop(path);
        self.put_content(id, content).await
    }
}

/// INVALID_ARGUMENT unless `data` is the blob `id`.
pub(crate) fn check_bytes(id: &BlobId, data: &[u8]) -> Result<(), Status> {
    if data.len() as u64 != id.size {
        return Err(Status::invalid_argument(format!(
            "blob {id}: {} bytes sent",
            data.len()
        )));
    }
    let got = hash_hex(id.func, data);
    if got != id.hash {
        return Err(Status::invalid_argument(format!(
            "blob {id}: the bytes hash to {got}"
        )));
    }
    Ok(())
}

pub(crate) fn io_status(e: std::io::Error) -> Status {
    store_status(larder_core::Error::io("spooling an upload", e))
}

/// The spool file and its hashes, owned by whichever thread works on them.
struct SpoolState {
    file: std::fs::File,
    /// The hash the client named the blob by.
    hasher: Hasher,
    /// Larder's blob digest, where the blob is stored under it (see [`Cas::spool`]).
    blake3: Option<blake3::Hasher>,
}

/// What a write in flight hands back: the state, and whether the write went through.
type Job = tokio::task::JoinHandle<(SpoolState, std::io::Result<()>)>;

/// An upload being received into a temporary file, hashed as it arrives.
///
/// Each appended piece is hashed and written on a blocking thread while the next one is being
/// received (one piece in flight at a time, so the hashes see the bytes in order): receiving,
/// hashing and writing overlap instead of taking turns, and the file is written from the
/// received buffer as it is.
pub(crate) struct Spool {
    path: tempfile::TempPath,
    /// The file and hashes when no piece is in flight.
    state: Option<SpoolState>,
    /// The piece in flight.
    pending: Option<Job>,
    /// Bytes received so far (written once the piece in flight is settled).
    pub(crate) written: u64,
}

/// A spool whose pieces are all written.
pub(crate) struct Spooled {
    path: tempfile::TempPath,
    /// The hash of the bytes, in the client's function.
    pub(crate) hash_hex: String,
    blake3: Option<blake3::Hasher>,
    /// Their length.
    pub(crate) written: u64,
}

impl Spool {
    /// A new, empty spool in `dir`, hashing with `id`'s function (and BLAKE3 if `blake3`).
    async fn create(dir: &Path, id: &BlobId, blake3: bool) -> Result<Spool, Status> {
        let dir = dir.to_owned();
        let tmp = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::Builder::new()
                .prefix("reapi-upload-")
                .tempfile_in(&dir)
        })
        .await
        .map_err(|e| Status::internal(format!("spooling task failed: {e}")))?
        .map_err(io_status)?;
        let (file, path) = tmp.into_parts();
        Ok(Spool {
            path,
            state: Some(SpoolState {
                file,
                hasher: id.func.hasher(),
                blake3: blake3.then(blake3::Hasher::new),
            }),
            pending: None,
            written: 0,
        })
    }

    /// Wait for the piece in flight; its error, if it failed (the spool is then unusable).
    pub(crate) async fn settle(&mut self) -> Result<(), Status> {
        let Some(job) = self.pending.as_mut() else {
            return Ok(());
        };
        // Cancelling this wait leaves the piece in flight, to be settled next time.
        let done = job.await;
        self.pending = None;
        match done {
            Ok((state, Ok(()))) => {
                self.state = Some(state);
                Ok(())
            }
            Ok((_, Err(e))) => Err(io_status(e)),
            Err(e) => Err(Status::internal(format!("spooling task failed: {e}"))),
        }
    }

    /// Append `data`: hashed and written while the caller goes on (see [`Spool`]).
    pub(crate) async fn append(&mut self, data: Bytes) -> Result<(), Status> {
        self.settle().await?;
        let Some(mut state) = self.state.take() else {
            return Err(Status::internal("the upload's spool failed earlier"));
        };
        self.written += data.len() as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            state.hasher.update(&data);
            if let Some(b) = state.blake3.as_mut() {
                b.update(&data);
            }
            let wrote = state.file.write_all(&data);
            (state, wrote)
        }));
        Ok(())
    }

    /// Every piece written: the bytes' hashes and the file.
    pub(crate) async fn finish(mut self) -> Result<Spooled, Status> {
        self.settle().await?;
        let Some(state) = self.state.take() else {
            return Err(Status::internal("the upload's spool failed earlier"));
        };
        Ok(Spooled {
            path: self.path,
            hash_hex: state.hasher.finalize_hex(),
            blake3: state.blake3,
            written: self.written,
        })
    }
}

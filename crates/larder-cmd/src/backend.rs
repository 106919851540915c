//! [`CmdStore`]: the [`Store`] implementation that moves files with external commands.
//!
//! Remote names are `BASE/entries/<storage name>` and `BASE/blobs/<blake3 hex>`. Every
//! transfer goes through a local scratch file: uploads are written (and verified) there first,
//! downloads land there and are verified before anything is returned.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use larder_core::entry::MAX_ENTRY_BYTES;
use larder_core::error::IoResultExt;
use larder_core::store::CHUNK_SIZE;
use larder_core::store::check_hash_fn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, Error, GetOptions, Key, PutMode, PutOptions,
    PutOutcome, Result, Store,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::config::CmdStoreBuilder;
use crate::runner;
use crate::template::Template;

/// Digests remembered as present before the set is cleared (bounds memory).
const KNOWN_LIMIT: usize = 1 << 20;

/// A store reached through upload/download commands. Cheap to clone.
#[derive(Clone)]
pub struct CmdStore {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CmdStoreBuilder,
    jobs: Semaphore,
    scratch: tempfile::TempDir,
    counter: AtomicU64,
    /// Blobs this process stored or read back intact: present, as far as it knows.
    known: Mutex<HashSet<Digest>>,
    /// Blobs found corrupt and not removable (no delete command): missing until re-stored.
    bad: Mutex<HashSet<Digest>>,
}

impl fmt::Debug for CmdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmdStore")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl fmt::Display for CmdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let put = self.inner.cfg.put.as_ref().map(Template::source);
        write!(
            f,
            "cmd store {:?} (put {:?})",
            self.inner.cfg.base,
            put.unwrap_or_default()
        )
    }
}

/// Removes a scratch file when dropped (also when the operation is cancelled).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl CmdStore {
    /// A store from a `cmd://` URL and the environment (see [`CmdStoreBuilder::from_url`]).
    ///
    /// # Errors
    /// As [`CmdStoreBuilder::from_url`] and [`CmdStoreBuilder::build`].
    pub fn from_url(url: &str) -> Result<CmdStore> {
        CmdStoreBuilder::from_url(url)?.build()
    }

    /// A builder for remote names under `base`.
    pub fn builder(base: impl Into<String>) -> CmdStoreBuilder {
        CmdStoreBuilder::new(base)
    }

    pub(crate) fn from_builder(cfg: CmdStoreBuilder) -> Result<CmdStore> {
        let mut b = tempfile::Builder::new();
        b.prefix("larder-cmd-");
        let scratch = match &cfg.scratch {
            Some(dir) => b.tempdir_in(dir),
            None => b.tempdir(),
        }
        .ctx(|| "creating the command store's scratch directory".into())?;
        Ok(CmdStore {
            inner: Arc::new(Inner {
                jobs: Semaphore::new(cfg.jobs),
                cfg,
                scratch,
                counter: AtomicU64::new(0),
                known: Mutex::new(HashSet::new()),
                bad: Mutex::new(HashSet::new()),
            }),
        })
    }

    fn remote(&self, rel: &str) -> String {
        let base = self.inner.cfg.base.trim_end_matches('/');
        if base.is_empty() {
            rel.to_owned()
        } else {
            format!("{base}/{rel}")
        }
    }

    fn entry_remote(&self, key: &Key) -> String {
        self.remote(&format!("entries/{}", key.storage_name()))
    }

    fn blob_remote(&self, digest: &Digest) -> String {
        self.remote(&format!("blobs/{}", digest.to_hex()))
    }

    fn scratch(&self) -> Scratch {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        Scratch(self.inner.scratch.path().join(format!("f{n}")))
    }

    /// Run one command under the concurrency bound.
    async fn exec(
        &self,
        what: &str,
        template: &Template,
        src: &str,
        tgt: &str,
    ) -> Result<runner::Finished> {
        let _permit = self.inner.jobs.acquire().await.map_err(|_| Error::Store {
            store: crate::STORE.into(),
            message: format!("{what}: the store is shutting down"),
            temporary: false,
            source: None,
        })?;
        let argv = template.expand(src, tgt);
        runner::run(
            what,
            &argv,
            self.inner.cfg.timeout,
            self.inner.cfg.exit_on_signal,
        )
        .await
    }

    /// Download `remote` to `local`: `Ok(false)` when the command says it is not there.
    async fn download(&self, what: &str, remote: &str, local: &Scratch) -> Result<bool> {
        let Some(get) = &self.inner.cfg.get else {
            return Ok(false);
        };
        let fin = self.exec(what, get, remote, &local.arg()).await?;
        if fin.success() {
            if local.path().is_file() {
                return Ok(true);
            }
            return Err(Error::Store {
                store: crate::STORE.into(),
                message: format!("{what}: `{}` succeeded but wrote no file", fin.command),
                temporary: false,
                source: None,
            });
        }
        let _ = std::fs::remove_file(local.path());
        let is_miss = match (&self.inner.cfg.miss_status, fin.code) {
            (None, _) => true,
            (Some(codes), Some(c)) => codes.contains(&c),
            (Some(_), None) => false,
        };
        if is_miss {
            tracing::debug!("{self}: {what}: miss: {}", fin.error(what));
            Ok(false)
        } else {
            Err(fin.error(what))
        }
    }

    async fn upload(&self, what: &str, local: &Scratch, remote: &str) -> Result<()> {
        let Some(put) = &self.inner.cfg.put else {
            return Err(Error::invalid("no upload command"));
        };
        let fin = self.exec(what, put, &local.arg(), remote).await?;
        if fin.success() {
            Ok(())
        } else {
            Err(fin.error(what))
        }
    }

    /// Whether `remote` exists, by the exists command; `None` without one.
    async fn exists(&self, remote: &str) -> Result<Option<bool>> {
        let Some(t) = &self.inner.cfg.exists else {
            return Ok(None);
        };
        let fin = self
            .exec(&format!("checking {remote}"), t, remote, remote)
            .await?;
        Ok(Some(fin.success()))
    }

    /// Whether `remote` exists: by the exists command, else by downloading it.
    async fn exists_or_fetch(&self, remote: &str) -> Result<bool> {
        if let Some(there) = self.exists(remote).await? {
            return Ok(there);
        }
        let local = self.scratch();
        self.download(&format!("checking {remote}"), remote, &local)
            .await
    }

    /// Remove `remote` with the delete command; `Ok(false)` without one.
    async fn remove(&self, remote: &str) -> Result<bool> {
        let Some(t) = &self.inner.cfg.delete else {
            return Ok(false);
        };
        let what = format!("removing {remote}");
        let fin = self.exec(&what, t, remote, remote).await?;
        if fin.success() {
            Ok(true)
        } else {
            Err(fin.error(&what))
        }
    }

    fn mark_known(&self, d: Digest) {
        if let Ok(mut k) = self.inner.known.lock() {
            if k.len() >= KNOWN_LIMIT {
                k.clear();
            }
            k.insert(d);
        }
        if let Ok(mut b) = self.inner.bad.lock() {
            b.remove(&d);
        }
    }

    fn is_known(&self, d: &Digest) -> bool {
        self.inner
            .known
            .lock()
            .map(|k| k.contains(d))
            .unwrap_or(false)
    }

    fn is_bad(&self, d: &Digest) -> bool {
        self.inner
            .bad
            .lock()
            .map(|b| b.contains(d))
            .unwrap_or(false)
    }

    /// A downloaded blob failed verification: remove it remotely if we can, and remember it as
    /// missing either way.
    async fn reject(&self, d: &Digest, reason: &str) {
        tracing::warn!("{self}: blob {d} is corrupt ({reason}); treated as missing");
        if let Ok(mut k) = self.inner.known.lock() {
            k.remove(d);
        }
        if let Ok(mut b) = self.inner.bad.lock() {
            b.insert(*d);
        }
        if let Err(e) = self.remove(&self.blob_remote(d)).await {
            tracing::warn!("{self}: cannot remove corrupt blob {d}: {e}");
        }
    }

    /// Download a blob into a scratch file and verify it: `None` when missing or corrupt.
    async fn fetch_blob(&self, digest: &Digest) -> Result<Option<(Scratch, u64)>> {
        if self.is_bad(digest) {
            return Ok(None);
        }
        let local = self.scratch();
        let what = format!("downloading blob {digest}");
        if !self
            .download(&what, &self.blob_remote(digest), &local)
            .await?
        {
            return Ok(None);
        }
        let path = local.path().to_path_buf();
        let (got, size) = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| Error::io("hashing a download", std::io::Error::other(e)))??;
        if got != *digest {
            self.reject(digest, "its bytes do not match the digest")
                .await;
            return Ok(None);
        }
        self.mark_known(*digest);
        Ok(Some((local, size)))
    }
}

/// BLAKE3 and length of a file, read in chunks: not `Digest::of_file`, whose memory map would
/// count the whole file as resident while it hashes.
fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut h = DigestWriter::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((h.finish(), h.len()))
}

/// Stream a verified scratch file, removing it when the stream is dropped.
fn stream_file(file: tokio::fs::File, scratch: Scratch) -> ByteStream {
    let s = futures::stream::unfold(
        (file, scratch, false),
        |(mut file, scratch, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; CHUNK_SIZE];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, scratch, false)))
                }
                Err(e) => {
                    let e = Error::io(format!("reading {}", scratch.path().display()), e);
                    Some((Err(e), (file, scratch, true)))
                }
            }
        },
    );
    Box::pin(s)
}

#[async_trait]
impl Store for CmdStore {
    fn capability(&self) -> Capability {
        let mut cap = Capability::none();
        cap.delete = self.inner.cfg.delete.is_some();
        cap
    }

    async fn get_entry_opts(&self, key: &Key, _opts: GetOptions) -> Result<Option<Entry>> {
        let remote = self.entry_remote(key);
        let local = self.scratch();
        if !self
            .download(&format!("downloading entry {key}"), &remote, &local)
            .await?
        {
            return Ok(None);
        }
        let len = tokio::fs::metadata(local.path())
            .await
            .ctx(|| format!("reading entry {key}"))?
            .len();
        let decoded = if len > MAX_ENTRY_BYTES as u64 {
            Err(Error::corrupt(
                format!("entry {key}"),
                "over the size limit",
            ))
        } else {
            let bytes = tokio::fs::read(local.path())
                .await
                .ctx(|| format!("reading entry {key}"))?;
            Entry::decode(&bytes)
        };
        match decoded {
            Ok(e) => Ok(Some(e)),
            Err(e) => {
                tracing::warn!("{self}: entry {key}: {e}; treated as a miss");
                if let Err(e) = self.remove(&remote).await {
                    tracing::warn!("{self}: cannot remove corrupt entry {key}: {e}");
                }
                Ok(None)
            }
        }
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let doc = entry.encode()?;
        let remote = self.entry_remote(key);
        // Commands offer no atomic create: check, then write (a narrow race, documented).
        if opts.mode == PutMode::Create && self.exists_or_fetch(&remote).await? {
            return Ok(PutOutcome::Exists);
        }
        let local = self.scratch();
        tokio::fs::write(local.path(), &doc)
            .await
            .ctx(|| format!("writing {}", local.path().display()))?;
        self.upload(&format!("uploading entry {key}"), &local, &remote)
            .await?;
        Ok(PutOutcome::Written)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        check_hash_fn(self, self.capability(), [digest])?;
        let Some((local, size)) = self.fetch_blob(digest).await? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(local.path())
            .await
            .ctx(|| format!("opening {}", local.path().display()))?;
        Ok(Some(BlobRead {
            size,
            stream: stream_file(file, local),
        }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut payload: ByteStream,
    ) -> Result<PutOutcome> {
        check_hash_fn(self, self.capability(), [digest])?;
        let remote = self.blob_remote(digest);
        if !self.is_bad(digest)
            && (self.is_known(digest) || self.exists(&remote).await? == Some(true))
        {
            return Ok(PutOutcome::Exists);
        }
        let local = self.scratch();
        let mut file = tokio::fs::File::create(local.path())
            .await
            .ctx(|| format!("creating {}", local.path().display()))?;
        let mut hasher = DigestWriter::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            if hasher.len() > size {
                break;
            }
            file.write_all(&chunk)
                .await
                .ctx(|| format!("writing {}", local.path().display()))?;
        }
        file.flush()
            .await
            .ctx(|| format!("writing {}", local.path().display()))?;
        drop(file);
        if hasher.len() != size {
            return Err(Error::invalid(format!(
                "blob {digest}: the stream had {}{} bytes, {size} were announced",
                if hasher.len() > size { "over " } else { "" },
                hasher.len()
            )));
        }
        if hasher.finish() != *digest {
            return Err(Error::invalid(format!(
                "blob {digest}: the bytes do not hash to this digest"
            )));
        }
        self.upload(&format!("uploading blob {digest}"), &local, &remote)
            .await?;
        self.mark_known(*digest);
        Ok(PutOutcome::Written)
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        // Blobs of other functions than BLAKE3 are refused (Capability::sha256 is off).
        check_hash_fn(self, self.capability(), digests)?;
        let checks = futures::stream::iter(digests.iter().copied())
            .map(|d| async move {
                if self.is_bad(&d) {
                    return Ok::<_, Error>((d, false));
                }
                if self.is_known(&d) {
                    return Ok((d, true));
                }
                // Without an exists command, anything this process has not seen is reported
                // missing: the caller re-uploads it, which is safe (content-addressed).
                let there = self.exists(&self.blob_remote(&d)).await? == Some(true);
                if there {
                    self.mark_known(d);
                }
                Ok((d, there))
            })
            .buffered(self.inner.cfg.jobs);
        let results: Vec<Result<(Digest, bool)>> = checks.collect().await;
        let mut missing = Vec::new();
        for r in results {
            let (d, there) = r?;
            if !there {
                missing.push(d);
            }
        }
        Ok(missing)
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        if self.inner.cfg.delete.is_none() {
            return Err(Error::NotSupported {
                store: self.to_string(),
                operation: "delete (configure a delete command)",
            });
        }
        let remote = self.entry_remote(key);
        if !self.exists_or_fetch(&remote).await? {
            return Ok(false);
        }
        self.remove(&remote).await
    }
}

//! Writing entries and blobs: into `tmp/` first, then a rename (or link) into place, so a reader
//! sees a whole file or none, even if the writer is killed half-way. Entries are written as
//! unnamed files in their own directory instead, then linked into place, where the system
//! allows it (`larder_core::unnamed`): one directory change instead of three.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use larder_core::digest::DigestWriter;
use larder_core::error::IoResultExt;
use larder_core::unnamed::{self, Linked};
use larder_core::{Digest, Error, HashFn, PutMode, PutOutcome, Result};

use crate::config::Compression;
use crate::core::{Layout, blocks, remove_if_exists, sync_dir, with_parent};
use crate::verified::Seen;

/// The zstd level [`Compression::Auto`] uses.
pub(crate) const AUTO_LEVEL: i32 = 3;
/// How much of a blob [`Compression::Auto`] compresses to decide.
pub(crate) const SAMPLE_BYTES: usize = 1 << 20;
/// Blobs at most this large are never compressed: they fit a few blocks either way.
pub(crate) const MIN_COMPRESS_BYTES: u64 = 8 * 1024;

/// A temporary file that is removed unless it was published.
#[derive(Debug)]
pub(crate) struct TmpFile {
    path: PathBuf,
    armed: bool,
}

impl TmpFile {
    pub(crate) fn new(path: PathBuf) -> TmpFile {
        TmpFile { path, armed: true }
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    /// The file was renamed away: nothing to clean up.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What writing an entry file did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryWritten {
    pub(crate) outcome: PutOutcome,
    /// Inode of the published file: the index applies our row only if the file is still ours.
    pub(crate) ino: u64,
}

/// Write an encoded entry to `dest` atomically. With [`PutMode::Create`], an existing file is
/// kept (the new one is linked, which fails if the name exists).
pub(crate) fn write_entry(
    layout: &Layout,
    dest: &Path,
    bytes: &[u8],
    mode: PutMode,
    fsync: bool,
) -> Result<EntryWritten> {
    if let Some(written) = write_entry_unnamed(dest, bytes, mode, fsync)? {
        return Ok(written);
    }
    let (path, mut file) = layout.create_tmp()?;
    let mut tmp = TmpFile::new(path);
    file.write_all(bytes)
        .ctx(|| format!("writing {}", tmp.path().display()))?;
    if fsync {
        file.sync_data()
            .ctx(|| format!("syncing {}", tmp.path().display()))?;
    }
    let ino = file
        .metadata()
        .ctx(|| format!("reading {}", tmp.path().display()))?
        .ino();
    drop(file);
    let outcome = match mode {
        PutMode::Create => {
            match with_parent(dest, || fs::hard_link(tmp.path(), dest)) {
                Ok(()) => PutOutcome::Written,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => PutOutcome::Exists,
                Err(e) => return Err(Error::io(format!("publishing {}", dest.display()), e)),
            }
            // The link (or the existing entry) is in place; the temporary name goes either way.
        }
        _ => {
            with_parent(dest, || fs::rename(tmp.path(), dest))
                .ctx(|| format!("publishing {}", dest.display()))?;
            tmp.disarm();
            PutOutcome::Written
        }
    };
    if fsync
        && outcome == PutOutcome::Written
        && let Some(parent) = dest.parent()
    {
        sync_dir(parent).ctx(|| format!("syncing {}", parent.display()))?;
    }
    Ok(EntryWritten { outcome, ino })
}

/// [`write_entry`] by an unnamed file in `dest`'s directory; `None` when that is not possible
/// here, or when an existing entry is to be replaced (linking cannot replace): the named way
/// does it then.
fn write_entry_unnamed(
    dest: &Path,
    bytes: &[u8],
    mode: PutMode,
    fsync: bool,
) -> Result<Option<EntryWritten>> {
    let Some(dir) = dest.parent() else {
        return Ok(None);
    };
    // Errors here are left to the named way, which reports them with its own paths.
    let Ok(Some(mut file)) = with_parent(dest, || unnamed::create_in(dir, 0o644)) else {
        return Ok(None);
    };
    file.write_all(bytes)
        .ctx(|| format!("writing an entry for {}", dest.display()))?;
    if fsync {
        file.sync_data()
            .ctx(|| format!("syncing an entry for {}", dest.display()))?;
    }
    let ino = file
        .metadata()
        .ctx(|| format!("reading an entry for {}", dest.display()))?
        .ino();
    let outcome =
        match unnamed::link(&file, dest).ctx(|| format!("publishing {}", dest.display()))? {
            Linked::Done => PutOutcome::Written,
            Linked::Exists if mode == PutMode::Create => PutOutcome::Exists,
            Linked::Exists | Linked::Unsupported => return Ok(None),
        };
    if fsync && outcome == PutOutcome::Written {
        sync_dir(dir).ctx(|| format!("syncing {}", dir.display()))?;
    }
    Ok(Some(EntryWritten { outcome, ino }))
}

/// How the bytes of a blob being written reach its temporary file.
enum Out {
    /// Still collecting the sample that decides compression.
    Undecided {
        file: File,
        sample: Vec<u8>,
    },
    Raw(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    /// The whole blob, already written as one zstd frame (the sample was all of it).
    Framed(BufWriter<File>),
}

/// A blob being written: hashed and counted as chunks arrive, compressed or not, published by
/// [`BlobSink::finish`] only if it matches the digest and size it was announced with.
pub(crate) struct BlobSink {
    tmp: TmpFile,
    out: Option<Out>,
    hasher: Hashing,
    received: u64,
    digest: Digest,
    size: u64,
    compression: Compression,
    fsync: bool,
}

impl std::fmt::Debug for BlobSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSink")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("received", &self.received)
            .finish()
    }
}

/// Where a blob's digest is computed.
enum Hashing {
    /// On the writing thread.
    Inline(Box<DigestWriter>),
    /// On a thread of its own, fed in pieces of at least [`HASH_BATCH`] bytes.
    Thread {
        tx: Option<std::sync::mpsc::SyncSender<Bytes>>,
        handle: Option<std::thread::JoinHandle<(Digest, u64)>>,
        pending: BytesMut,
    },
}

/// Small chunks are gathered into pieces this large before they go to the hashing thread (one
/// hand-over per network-sized chunk would cost more than hashing it).
const HASH_BATCH: usize = 256 * 1024;

impl Hashing {
    fn update(&mut self, chunk: &[u8], owned: Option<Bytes>) -> Result<()> {
        match self {
            Hashing::Inline(h) => h.update(chunk),
            Hashing::Thread { tx, pending, .. } => {
                let piece = match owned {
                    Some(b) if pending.is_empty() && b.len() >= HASH_BATCH => b,
                    _ => {
                        pending.extend_from_slice(chunk);
                        if pending.len() < HASH_BATCH {
                            return Ok(());
                        }
                        pending.split().freeze()
                    }
                };
                let sent = tx.as_ref().is_some_and(|tx| tx.send(piece).is_ok());
                if !sent {
                    return Err(Error::io(
                        "hashing a blob",
                        io::Error::other("the hashing thread stopped"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The digest and length of everything fed.
    fn finish(&mut self) -> Result<(Digest, u64)> {
        match self {
            Hashing::Inline(h) => Ok((h.finish(), h.len())),
            Hashing::Thread {
                tx,
                handle,
                pending,
            } => {
                if !pending.is_empty()
                    && let Some(tx) = tx.as_ref()
                {
                    let _ = tx.send(pending.split().freeze());
                }
                drop(tx.take());
                handle.take().and_then(|h| h.join().ok()).ok_or_else(|| {
                    Error::io(
                        "hashing a blob",
                        io::Error::other("the hashing thread failed"),
                    )
                })
            }
        }
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        // Let the hashing thread end (an abandoned write must not leave it waiting).
        if let Hashing::Thread { tx, handle, .. } = self {
            drop(tx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// A blob that was written and published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobWritten {
    /// Bytes it occupies on disk (see [`blocks`]).
    pub(crate) stored: u64,
    /// The published raw file's identity, read once it was in place; `None` for a compressed
    /// file.
    pub(crate) seen: Option<Seen>,
    /// The published file's length and inode.
    pub(crate) len: u64,
    pub(crate) ino: u64,
}

fn mismatch(digest: &Digest) -> Error {
    Error::invalid(format!("blob does not match its digest {digest}"))
}

impl BlobSink {
    /// Start writing blob `digest` of `size` bytes.
    pub(crate) fn new(
        layout: &Layout,
        digest: Digest,
        size: u64,
        compression: Compression,
        fsync: bool,
    ) -> Result<BlobSink> {
        let (path, file) = layout.create_tmp()?;
        let sample_cap = size.min(SAMPLE_BYTES as u64) as usize;
        Ok(BlobSink {
            tmp: TmpFile::new(path),
            out: Some(Out::Undecided {
                file,
                sample: Vec::with_capacity(sample_cap),
            }),
            hasher: Hashing::Inline(Box::new(DigestWriter::for_digest(&digest))),
            received: 0,
            digest,
            size,
            compression,
            fsync,
        })
    }

    fn io_err(&self, e: io::Error) -> Error {
        Error::io(format!("writing {}", self.tmp.path().display()), e)
    }

    /// Hash on a thread of its own from now on, so hashing overlaps with writing (for large
    /// blobs, before the first chunk).
    pub(crate) fn hash_in_background(&mut self) -> Result<()> {
        if self.received > 0 || !matches!(self.hasher, Hashing::Inline(_)) {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(4);
        let func = self.digest.func();
        let handle = std::thread::Builder::new()
            .name("larder-fs-hash".into())
            .spawn(move || {
                if func == HashFn::Blake3 {
                    // One thread, overlapping with the writes (not BLAKE3's rayon pool).
                    let mut h = blake3::Hasher::new();
                    while let Ok(chunk) = rx.recv() {
                        h.update(&chunk);
                    }
                    return (Digest::from(h.finalize()), h.count());
                }
                let mut h = DigestWriter::for_fn(func);
                while let Ok(chunk) = rx.recv() {
                    h.update(&chunk);
                }
                (h.finish(), h.len())
            })
            .map_err(|e| Error::io("starting a hashing thread", e))?;
        self.hasher = Hashing::Thread {
            tx: Some(tx),
            handle: Some(handle),
            pending: BytesMut::new(),
        };
        Ok(())
    }

    /// Feed the next chunk.
    pub(crate) fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.write_inner(chunk, None)
    }

    /// Feed the next chunk, owned (no copy when hashing in the background).
    pub(crate) fn write_bytes(&mut self, chunk: Bytes) -> Result<()> {
        let owned = chunk.clone(); // a reference count, not the bytes
        self.write_inner(&chunk, Some(owned))
    }

    fn write_inner(&mut self, chunk: &[u8], owned: Option<Bytes>) -> Result<()> {
        if self.received + chunk.len() as u64 > self.size {
            return Err(Error::invalid(format!(
                "blob {} is longer than its declared {} bytes",
                self.digest, self.size
            )));
        }
        self.received += chunk.len() as u64;
        self.hasher.update(chunk, owned)?;
        let mut rest = chunk;
        if let Some(Out::Undecided { sample, .. }) = self.out.as_mut() {
            let take = (SAMPLE_BYTES - sample.len()).min(chunk.len());
            sample.extend_from_slice(&chunk[..take]);
            rest = &chunk[take..];
            if sample.len() < SAMPLE_BYTES {
                return Ok(());
            }
            self.decide()?;
        }
        self.write_out(rest).map_err(|e| self.io_err(e))
    }

    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.out.as_mut() {
            Some(Out::Raw(w)) => w.write_all(bytes),
            Some(Out::Zstd(w)) => w.write_all(bytes),
            Some(Out::Framed(_)) if !bytes.is_empty() => {
                Err(io::Error::other("more bytes than the blob's declared size"))
            }
            _ => Ok(()),
        }
    }

    /// Choose raw or zstd from the sample collected so far, and write the sample out.
    fn decide(&mut self) -> Result<()> {
        if !matches!(self.out, Some(Out::Undecided { .. })) {
            return Ok(());
        }
        let Some(Out::Undecided { file, sample }) = self.out.take() else {
            return Ok(());
        };
        let whole = sample.len() as u64 == self.size;
        let level = match self.compression {
            Compression::Off => None,
            Compression::Level(l) => Some(l),
            Compression::Auto if self.size <= MIN_COMPRESS_BYTES => None,
            Compression::Auto => match auto_compressed(&sample) {
                Some(c) => {
                    if whole {
                        // The sample was the whole blob and its frame (content size in the
                        // header, no checksum, as the encoder below writes it) is the file:
                        // compressing it a second time would only cost the same again.
                        let mut w = BufWriter::with_capacity(c.len(), file);
                        let res = w.write_all(&c);
                        self.out = Some(Out::Framed(w));
                        return res.map_err(|e| self.io_err(e));
                    }
                    Some(AUTO_LEVEL)
                }
                None => None,
            },
        };
        let buf = BufWriter::with_capacity(256 * 1024, file);
        let mut out = match level {
            None => Out::Raw(buf),
            Some(level) => {
                let mut enc =
                    zstd::stream::write::Encoder::new(buf, level).map_err(|e| self.io_err(e))?;
                // The frame header carries the blob's size, so a read knows it without
                // decompressing. BLAKE3 verifies the content; zstd's own checksum would be
                // redundant.
                enc.include_contentsize(true).map_err(|e| self.io_err(e))?;
                enc.set_pledged_src_size(Some(self.size))
                    .map_err(|e| self.io_err(e))?;
                Out::Zstd(enc)
            }
        };
        let res = match &mut out {
            Out::Raw(w) => w.write_all(&sample),
            Out::Zstd(w) => w.write_all(&sample),
            Out::Undecided { .. } | Out::Framed(_) => Ok(()),
        };
        self.out = Some(out);
        res.map_err(|e| self.io_err(e))
    }

    /// Check the blob and publish it under `layout`. Nothing is published on a mismatch.
    pub(crate) fn finish(mut self, layout: &Layout) -> Result<BlobWritten> {
        let (got, len) = self.hasher.finish()?;
        if len != self.size || self.received != self.size || got != self.digest {
            return Err(mismatch(&self.digest));
        }
        self.decide()?;
        let (file, compressed) = match self.out.take() {
            Some(Out::Raw(w)) => (w.into_inner().map_err(|e| e.into_error()), false),
            Some(Out::Framed(w)) => (w.into_inner().map_err(|e| e.into_error()), true),
            Some(Out::Zstd(w)) => (
                w.finish()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error())),
                true,
            ),
            _ => return Err(mismatch(&self.digest)),
        };
        let file = file.map_err(|e| self.io_err(e))?;
        if self.fsync {
            file.sync_data().map_err(|e| self.io_err(e))?;
        }
        // Read-only, so a hard-linked output cannot be rewritten in place into the cache.
        file.set_permissions(Permissions::from_mode(0o444))
            .map_err(|e| self.io_err(e))?;
        let meta = file.metadata().map_err(|e| self.io_err(e))?;
        let (len, ino) = (meta.len(), meta.ino());
        let dest = layout.blob_path(&self.digest, compressed);
        with_parent(&dest, || fs::rename(self.tmp.path(), &dest))
            .ctx(|| format!("publishing {}", dest.display()))?;
        self.tmp.disarm();
        // The identity of the file just verified and written, from its own descriptor and
        // after the rename (which moves its change time): reads of this very file, unchanged,
        // need not hash it again. A failure here only costs that.
        let seen = (!compressed)
            .then(|| file.metadata().ok().map(|m| Seen::of(&m)))
            .flatten();
        drop(file);
        if self.fsync
            && let Some(parent) = dest.parent()
        {
            sync_dir(parent).ctx(|| format!("syncing {}", parent.display()))?;
        }
        Ok(BlobWritten {
            stored: blocks(len),
            seen,
            len,
            ino,
        })
    }
}

/// `sample` compressed at [`AUTO_LEVEL`], when that saves at least a tenth of it: how
/// [`Compression::Auto`] decides that a blob is stored compressed.
fn auto_compressed(sample: &[u8]) -> Option<Vec<u8>> {
    zstd::bulk::compress(sample, AUTO_LEVEL)
        .ok()
        .filter(|c| (c.len() as u64) * 10 <= (sample.len() as u64) * 9)
}

/// Publish the file at `path`, which its caller has verified to hold the `size` bytes of blob
/// `digest`, by renaming it into place: no copy and no second hashing. `None`, with the file
/// left where it is, when the blob is to be stored compressed (per `compression`, decided as
/// [`BlobSink`] decides) or the file is on another file system; the caller then writes it the
/// usual way.
pub(crate) fn take_blob_file(
    layout: &Layout,
    digest: &Digest,
    path: &Path,
    size: u64,
    compression: Compression,
    fsync: bool,
) -> Result<Option<BlobWritten>> {
    let shown = || format!("taking {} as blob {digest}", path.display());
    // Read and write: the sample is read from it, and its length may be set.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(shown)?;
    let meta = file.metadata().ctx(shown)?;
    if meta.len() != size {
        return Err(Error::invalid(format!(
            "{}: {} bytes, not the {size} of blob {digest}",
            path.display(),
            meta.len()
        )));
    }
    let raw = match compression {
        Compression::Off => true,
        Compression::Level(_) => false,
        Compression::Auto if size <= MIN_COMPRESS_BYTES => true,
        Compression::Auto => {
            let mut sample = Vec::with_capacity(size.min(SAMPLE_BYTES as u64) as usize);
            (&mut file)
                .take(SAMPLE_BYTES as u64)
                .read_to_end(&mut sample)
                .ctx(shown)?;
            auto_compressed(&sample).is_none()
        }
    };
    if !raw {
        return Ok(None);
    }
    // Space reserved beyond the end (an upload spooled with `fallocate`) is given back, so
    // the blob occupies what its length says.
    if meta.blocks() * 512 > blocks(size) {
        file.set_len(size).ctx(shown)?;
    }
    if fsync {
        file.sync_data().ctx(shown)?;
    }
    // Read-only, as every published blob (see `BlobSink::finish`).
    file.set_permissions(Permissions::from_mode(0o444))
        .ctx(shown)?;
    let dest = layout.blob_path(digest, false);
    match with_parent(&dest, || fs::rename(path, &dest)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(None),
        Err(e) => return Err(Error::io(format!("publishing {}", dest.display()), e)),
    }
    // As in `BlobSink::finish`: the identity after the rename, from the file's own descriptor.
    let seen = file.metadata().ok().map(|m| Seen::of(&m));
    drop(file);
    if fsync && let Some(parent) = dest.parent() {
        sync_dir(parent).ctx(|| format!("syncing {}", parent.display()))?;
    }
    Ok(Some(BlobWritten {
        stored: blocks(size),
        seen,
        len: size,
        ino: meta.ino(),
    }))
}

/// Remove both forms of a blob (after it failed verification, or when trimmed). Returns whether
/// anything was removed.
pub(crate) fn remove_blob(layout: &Layout, digest: &Digest) -> Result<bool> {
    let mut removed = false;
    for compressed in [false, true] {
        let p = layout.blob_path(digest, compressed);
        removed |= remove_if_exists(&p).ctx(|| format!("removing {}", p.display()))?;
    }
    Ok(removed)
}

//! Reading blobs: verified as they stream, or, for a blob whose file is the one verified
//! before (see [`crate::verified`]), read in large pieces without hashing.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use larder_core::digest::DigestWriter;
use larder_core::store::CHUNK_SIZE;
use larder_core::{ByteStream, Digest, Error, Result};

use crate::core::Layout;
use crate::verified::Seen;

/// Pieces a trusted blob is mapped in: large, so a 100 MiB blob is a few dozen hops to the
/// blocking pool, small enough that a connection holds little (one piece, one mapped ahead).
pub(crate) const TRUSTED_CHUNK: usize = 2 << 20;

/// A stored blob file, found.
#[derive(Debug)]
pub(crate) struct Located {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) compressed: bool,
    /// Length of the file itself.
    pub(crate) file_len: u64,
    /// The open file's identity, read when it was opened.
    pub(crate) seen: Seen,
}

/// Open blob `digest`, raw form first.
pub(crate) fn locate(layout: &Layout, digest: &Digest) -> Result<Option<Located>> {
    for compressed in [false, true] {
        let path = layout.blob_path(digest, compressed);
        match File::open(&path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                return Ok(Some(Located {
                    path,
                    file,
                    compressed,
                    file_len: meta.len(),
                    seen: Seen::of(&meta),
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        }
    }
    Ok(None)
}

/// The uncompressed size recorded in a zstd frame header.
pub(crate) fn zstd_content_size(file: &mut File, digest: &Digest) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; 18]; // the largest frame header
    let mut n = 0;
    while n < header.len() {
        match file.read_at(&mut header[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(format!("reading blob {digest}"), e)),
        }
    }
    match zstd::zstd_safe::get_frame_content_size(&header[..n]) {
        Ok(Some(size)) => Ok(size),
        _ => Err(Error::corrupt(
            format!("blob {digest}"),
            "compressed file has no valid frame header",
        )),
    }
}

/// A source of a blob's uncompressed bytes.
pub(crate) enum Source {
    Raw(File),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<File>>>),
}

impl Source {
    /// Open a located blob; returns the source and the blob's (uncompressed) size.
    pub(crate) fn open(mut loc: Located, digest: &Digest) -> Result<(Source, u64)> {
        if !loc.compressed {
            return Ok((Source::Raw(loc.file), loc.file_len));
        }
        let size = zstd_content_size(&mut loc.file, digest)?;
        let dec = zstd::stream::read::Decoder::new(loc.file)
            .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        Ok((Source::Zstd(Box::new(dec)), size))
    }

    /// Fill `buf` as far as possible; returns the bytes read (less than `buf.len()` only at the
    /// end). Decompression errors are reported as corruption.
    pub(crate) fn fill(&mut self, buf: &mut [u8], digest: &Digest) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let r = match self {
                Source::Raw(f) => f.read(&mut buf[n..]),
                Source::Zstd(d) => d.read(&mut buf[n..]),
            };
            match r {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match self {
                        Source::Zstd(_) if e.kind() != io::ErrorKind::PermissionDenied => {
                            Error::corrupt(
                                format!("blob {digest}"),
                                format!("cannot decompress: {e}"),
                            )
                        }
                        _ => Error::io(format!("reading blob {digest}"), e),
                    });
                }
            }
        }
        Ok(n)
    }
}

/// What a blob read reports to its store as it goes.
pub(crate) trait ReadEvents: Send + Sync + 'static {
    /// `bytes` more were hashed.
    fn hashed(&self, bytes: u64);
    /// The whole blob was read and matched its digest.
    fn verified(&self);
    /// The blob failed verification (before the error is handed out).
    fn corrupt(&self);
}

/// Verifies a blob's bytes as they are read.
#[derive(Debug)]
pub(crate) struct Verifier {
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
}

impl Verifier {
    pub(crate) fn new(digest: Digest, size: u64) -> Verifier {
        Verifier {
            hasher: DigestWriter::for_digest(&digest),
            digest,
            size,
        }
    }

    /// Feed bytes; fails as soon as there are more than the blob's size.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        if self.hasher.len() > self.size {
            return Err(self.corrupt());
        }
        Ok(())
    }

    /// Whether the blob's size has been fed.
    pub(crate) fn complete(&self) -> bool {
        self.hasher.len() == self.size
    }

    /// Check the bytes fed against the digest and size.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.hasher.len() == self.size && self.hasher.finish() == self.digest {
            Ok(())
        } else {
            Err(self.corrupt())
        }
    }

    fn corrupt(&self) -> Error {
        Error::corrupt(
            format!("blob {}", self.digest),
            "stored bytes do not match the digest",
        )
    }
}

/// Read a whole (small) blob and verify it, reporting to `events`.
pub(crate) fn read_small(
    mut src: Source,
    digest: Digest,
    size: u64,
    events: &dyn ReadEvents,
) -> Result<Bytes> {
    let mut buf = vec![0u8; size as usize + 1];
    let res = src.fill(&mut buf, &digest).and_then(|n| {
        buf.truncate(n);
        events.hashed(n as u64);
        let mut v = Verifier::new(digest, size);
        v.update(&buf)?;
        v.finish()
    });
    match res {
        Ok(()) => {
            events.verified();
            Ok(Bytes::from(buf))
        }
        Err(e) => {
            if e.kind() == larder_core::ErrorKind::Corrupt {
                events.corrupt();
            }
            Err(e)
        }
    }
}

/// Stream a blob, verifying it. Each chunk is read on a blocking thread when the previous one
/// is handed out (one chunk of read-ahead), so a consumer that stops reading (a stalled
/// download) holds no thread. The chunk that completes the blob is handed out only once the
/// whole blob has hashed to its digest: a damaged blob never reaches its consumer complete,
/// its stream ends with [`Error::Corrupt`] instead of its last chunk (and `events` heard of
/// it); a blob read to its end and verified is reported to `events` too.
pub(crate) fn stream(
    src: Source,
    digest: Digest,
    size: u64,
    events: Box<dyn ReadEvents>,
) -> ByteStream {
    let reader = ChunkReader {
        src,
        v: Verifier::new(digest, size),
        digest,
        size,
        off: 0,
        done: false,
        events,
    };
    Box::pin(futures::stream::unfold(
        Some(reader.spawn()),
        |pending| async move {
            let (reader, item) = match pending?.await {
                Ok(step) => step,
                Err(e) => {
                    let e = Error::invalid(format!("the blob reader task failed: {e}"));
                    return Some((Err(e), None));
                }
            };
            match item {
                Ok(Some(chunk)) => {
                    let next = (!reader.done).then(|| reader.spawn());
                    Some((Ok(chunk), next))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

/// A blob being read chunk by chunk (see [`stream`]).
struct ChunkReader {
    src: Source,
    v: Verifier,
    digest: Digest,
    size: u64,
    /// Bytes handed out so far.
    off: u64,
    /// The last chunk has been handed out, verified.
    done: bool,
    events: Box<dyn ReadEvents>,
}

impl ChunkReader {
    /// Read the next chunk on a blocking thread.
    fn spawn(mut self) -> tokio::task::JoinHandle<(ChunkReader, Result<Option<Bytes>>)> {
        tokio::task::spawn_blocking(move || {
            let item = self.next_chunk();
            match &item {
                Err(e) if e.kind() == larder_core::ErrorKind::Corrupt => self.events.corrupt(),
                Ok(_) if self.done => self.events.verified(),
                _ => {}
            }
            (self, item)
        })
    }

    /// The next chunk, verified as far as it goes; the last one only once the whole blob is.
    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let chunk = match &mut self.src {
            // `size` is the raw file's length, read when it was opened.
            Source::Raw(file) => {
                let n = (self.size - self.off).min(CHUNK_SIZE as u64);
                if n == 0 {
                    self.v.finish()?;
                    self.done = true;
                    return Ok(None);
                }
                let map = map_piece(file, self.off, n)
                    .map_err(|e| Error::io(format!("reading blob {}", self.digest), e))?;
                self.events.hashed(n);
                self.v.update(&map)?;
                Bytes::from_owner(map)
            }
            Source::Zstd(_) => {
                let mut buf = BytesMut::zeroed(CHUNK_SIZE);
                let n = self.src.fill(&mut buf, &self.digest)?;
                buf.truncate(n);
                self.events.hashed(n as u64);
                self.v.update(&buf)?;
                if n == CHUNK_SIZE && self.v.complete() {
                    // All the bytes are there: the stream must end here.
                    let mut probe = [0u8; 1];
                    let extra = self.src.fill(&mut probe, &self.digest)?;
                    self.v.update(&probe[..extra])?;
                }
                buf.freeze()
            }
        };
        self.off += chunk.len() as u64;
        if chunk.len() < CHUNK_SIZE || self.off >= self.size {
            // The end (of the file, or of the blob): check it all before handing this out.
            self.v.finish()?;
            self.done = true;
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some(chunk))
    }
}

/// Stream a trusted raw blob of `size` bytes from `file`: [`TRUSTED_CHUNK`] pieces mapped from
/// the page cache (no hash, and no copy: a consumer writing a piece to a socket copies the
/// cached pages straight into it), each mapped on a blocking thread, one piece ahead.
pub(crate) fn stream_trusted(file: File, digest: Digest, size: u64) -> ByteStream {
    let reader = Trusted {
        file,
        digest,
        size,
        off: 0,
    };
    Box::pin(futures::stream::unfold(
        Some(reader.spawn()),
        |pending| async move {
            let (reader, item) = match pending?.await {
                Ok(step) => step,
                Err(e) => {
                    let e = Error::invalid(format!("the blob reader task failed: {e}"));
                    return Some((Err(e), None));
                }
            };
            match item {
                Ok(Some(chunk)) => {
                    let next = (reader.off < reader.size).then(|| reader.spawn());
                    Some((Ok(chunk), next))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

/// Read a whole (small) trusted raw blob of `size` bytes: no hash.
pub(crate) fn read_trusted(file: &File, digest: &Digest, size: u64) -> Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, 0).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::corrupt(
                format!("blob {digest}"),
                "the file is shorter than it was when opened",
            )
        } else {
            Error::io(format!("reading blob {digest}"), e)
        }
    })?;
    Ok(Bytes::from(buf))
}

/// A trusted blob being read piece by piece (see [`stream_trusted`]).
struct Trusted {
    file: File,
    digest: Digest,
    size: u64,
    /// Bytes handed out so far.
    off: u64,
}

impl Trusted {
    fn spawn(mut self) -> tokio::task::JoinHandle<(Trusted, Result<Option<Bytes>>)> {
        tokio::task::spawn_blocking(move || {
            let n = (self.size - self.off).min(TRUSTED_CHUNK as u64);
            if n == 0 {
                return (self, Ok(None));
            }
            match map_piece(&self.file, self.off, n) {
                Ok(map) => {
                    self.off += n;
                    (self, Ok(Some(Bytes::from_owner(map))))
                }
                Err(e) => {
                    let e = Error::io(format!("reading blob {}", self.digest), e);
                    // Nothing more is read after an error.
                    self.off = self.size;
                    (self, Err(e))
                }
            }
        })
    }
}

/// Map `len` bytes of blob file `file` from `offset` (page-aligned), pages populated.
pub(crate) fn map_piece(file: &File, offset: u64, len: u64) -> io::Result<memmap2::Mmap> {
    // SAFETY: blob files are read-only and never modified in place: they are replaced by rename
    // and removed by unlink, neither of which changes a mapping's contents, and callers map only
    // within the length the file had when it was opened. A file truncated behind our back (by
    // hand) would fault; every other change is caught by the digest check of a verified read,
    // or, for a trusted one, is what trusting the file's identity accepts (see `verified`).
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len as usize)
            .populate()
            .map(file)
    }
}

/// Remove a blob that failed verification, keeping the error a removal would hide.
pub(crate) fn discard_corrupt(layout: &Layout, digest: &Digest) -> bool {
    tracing::warn!("larder: blob {digest} failed verification; removing it");
    let mut removed = false;
    for compressed in [false, true] {
        let p = layout.blob_path(digest, compressed);
        removed |= fs::remove_file(&p).is_ok();
    }
    removed
}

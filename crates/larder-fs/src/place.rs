//! Placing a blob into a destination file: the hot path of restoring outputs.
//!
//! Raw blobs are hard-linked when asked (same device), else reflinked where the file system can,
//! else copied with `copy_file_range` (in-kernel, no user-space buffer). The digest is checked on
//! every path; for copies the source is hashed on a second thread while the kernel copies, so
//! verification costs next to no wall time. Compressed blobs are decompressed into the
//! destination while hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

use larder_core::digest::DigestWriter;
use larder_core::error::IoResultExt;
use larder_core::{Digest, Error, HashFn, Placement, Result};

use crate::core::{Layout, remove_if_exists};
use crate::reader::{Located, Source, Verifier, locate, map_piece};

/// Blobs smaller than this are read, checked and written in one go (a second thread costs
/// more than it saves).
const PARALLEL_BYTES: u64 = 1 << 20;

/// Place blob `digest` at `dest`. `Ok(false)` if the store does not hold it. On a verification
/// failure `on_corrupt` runs (it removes the blob) and [`Error::Corrupt`] is returned.
pub(crate) fn place(
    layout: &Layout,
    digest: &Digest,
    dest: &Path,
    how: Placement,
    on_corrupt: &dyn Fn(),
) -> Result<bool> {
    let Some(loc) = locate(layout, digest)? else {
        return Ok(false);
    };
    let res = if loc.compressed {
        decompress_to(loc, digest, dest)
    } else {
        if how == Placement::Hardlink {
            match link(&loc.path, dest) {
                Ok(()) => {
                    return check_linked(&loc, digest).map(|()| true).inspect_err(|e| {
                        if e.kind() == larder_core::ErrorKind::Corrupt {
                            on_corrupt();
                        }
                    });
                }
                // Different device, too many links, or a file system without hard links.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EMLINK | libc::EPERM | libc::ENOTSUP)
                    ) => {}
                Err(e) => return Err(Error::io(format!("linking {}", dest.display()), e)),
            }
        }
        copy_to(loc, digest, dest)
    };
    match res {
        Ok(()) => Ok(true),
        Err(e) => {
            if e.kind() == larder_core::ErrorKind::Corrupt {
                on_corrupt();
            }
            Err(e)
        }
    }
}

fn link(src: &Path, dest: &Path) -> io::Result<()> {
    match fs::hard_link(src, dest) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_if_exists(dest)?;
            fs::hard_link(src, dest)
        }
        other => other,
    }
}

/// Hash an open blob file with `digest`'s function: BLAKE3 on two threads (see
/// [`SplitHash`]), another function in one pass.
fn hash_file(file: &File, digest: &Digest) -> Result<(Digest, u64)> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading blob {digest}"), e))?
        .len();
    if digest.func() != HashFn::Blake3 {
        return hash_file_serially(file, digest);
    }
    let split = SplitHash::new(file, len);
    if len > PIECE {
        std::thread::scope(|s| {
            s.spawn(|| split.work(true));
            split.work(false);
        });
    } else {
        split.work(true);
    }
    let got = split
        .finish()
        .map_err(|e| Error::io(format!("hashing blob {digest}"), e))?;
    Ok((got, len))
}

/// The digest of a whole file under `digest`'s function, read from its start in one pass.
fn hash_file_serially(file: &File, digest: &Digest) -> Result<(Digest, u64)> {
    use std::os::unix::fs::FileExt;
    let mut h = DigestWriter::for_digest(digest);
    let mut buf = vec![0u8; larder_core::store::CHUNK_SIZE];
    loop {
        let n = match file.read_at(&mut buf, h.len()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(format!("hashing blob {digest}"), e)),
        };
        h.update(&buf[..n]);
    }
    Ok((h.finish(), h.len()))
}

/// BLAKE3 of a file split into [`PIECE`]-sized subtrees that two threads take from either end:
/// the hashing thread from the front while the other copies, then the copying thread from the
/// back once its copy is done. Both finish at about the same time, so hashing hides behind the
/// copy even on two cores (a thread pool would compete with the copy instead). Each piece is
/// mapped on its own, so the cost of mapping is shared too.
struct SplitHash<'a> {
    file: &'a File,
    len: u64,
    /// Next piece to take from the front, and one past the last piece left for the back.
    cursor: Mutex<(usize, usize)>,
    /// Chaining values of the pieces (the root hash itself when there is only one piece).
    cvs: Mutex<Vec<Option<ChainingValue>>>,
    failed: Mutex<Option<io::Error>>,
}

/// Bytes per piece of a [`SplitHash`]: a power of two, so pieces are whole BLAKE3 subtrees (and
/// a multiple of the page size, so they can be mapped one by one).
const PIECE: u64 = 4 << 20;

impl<'a> SplitHash<'a> {
    fn new(file: &'a File, len: u64) -> SplitHash<'a> {
        let n = len.div_ceil(PIECE).max(1) as usize;
        SplitHash {
            file,
            len,
            cursor: Mutex::new((0, n)),
            cvs: Mutex::new(vec![None; n]),
            failed: Mutex::new(None),
        }
    }

    fn claim(&self, front: bool) -> Option<usize> {
        let mut c = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if c.0 >= c.1 {
            return None;
        }
        if front {
            c.0 += 1;
            Some(c.0 - 1)
        } else {
            c.1 -= 1;
            Some(c.1)
        }
    }

    fn hash_piece(&self, i: usize) -> io::Result<ChainingValue> {
        let start = i as u64 * PIECE;
        let len = (self.len - start).min(PIECE);
        if len == 0 {
            return Ok(*blake3::hash(&[]).as_bytes());
        }
        let map = map_piece(self.file, start, len)?;
        let mut h = blake3::Hasher::new();
        if self.len <= PIECE {
            return Ok(*h.update(&map).finalize().as_bytes());
        }
        Ok(h.set_input_offset(start).update(&map).finalize_non_root())
    }

    /// Hash pieces until none is left.
    fn work(&self, front: bool) {
        while let Some(i) = self.claim(front) {
            match self.hash_piece(i) {
                Ok(cv) => self.cvs.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(cv),
                Err(e) => {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        }
    }

    /// The root hash, once both threads are done.
    fn finish(self) -> io::Result<Digest> {
        if let Some(e) = self.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let cvs = self.cvs.into_inner().unwrap_or_else(|p| p.into_inner());
        let missing = || io::Error::other("a piece of the blob was not hashed");
        if self.len <= PIECE {
            return cvs[0].map(Digest::blake3).ok_or_else(missing);
        }
        // Pieces combine exactly as BLAKE3's tree does: the left subtree of `n` bytes is
        // `left_subtree_len(n)`, which is a multiple of PIECE when n > PIECE.
        fn merge(cvs: &[Option<ChainingValue>], off: u64, n: u64) -> Option<ChainingValue> {
            if n <= PIECE {
                return cvs.get((off / PIECE) as usize).copied().flatten();
            }
            let left = left_subtree_len(n);
            Some(merge_subtrees_non_root(
                &merge(cvs, off, left)?,
                &merge(cvs, off + left, n - left)?,
                Mode::Hash,
            ))
        }
        let left = left_subtree_len(self.len);
        let (l, r) = (
            merge(&cvs, 0, left).ok_or_else(missing)?,
            merge(&cvs, left, self.len - left).ok_or_else(missing)?,
        );
        Ok(Digest::from(merge_subtrees_root(&l, &r, Mode::Hash)))
    }
}

fn check_linked(loc: &Located, digest: &Digest) -> Result<()> {
    let (got, len) = hash_file(&loc.file, digest)?;
    verdict(digest, got, len, loc.file_len)
}

/// Create `dest` (replacing any file there) for writing, mode 0644.
fn create_dest(dest: &Path) -> Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(dest)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // It may be a read-only hard link from an earlier placement: replace, don't truncate.
            remove_if_exists(dest).ctx(|| format!("replacing {}", dest.display()))?;
            open().ctx(|| format!("creating {}", dest.display()))
        }
        other => other.ctx(|| format!("creating {}", dest.display())),
    }
}

/// Copy a raw blob to `dest`, verifying the source concurrently.
fn copy_to(loc: Located, digest: &Digest, dest: &Path) -> Result<()> {
    let mut out = create_dest(dest)?;
    if loc.file_len < PARALLEL_BYTES {
        let mut src = Source::Raw(loc.file);
        let mut buf = vec![0u8; loc.file_len as usize + 1];
        let n = src.fill(&mut buf, digest)?;
        let mut v = Verifier::new(*digest, loc.file_len);
        v.update(&buf[..n])?;
        v.finish()?;
        out.write_all(&buf[..n])
            .ctx(|| format!("writing {}", dest.display()))?;
        return Ok(());
    }
    // A reflink shares the blocks: nothing is copied, only verified.
    if reflink_copy::reflink_file(&loc.file, &out).is_ok() {
        let (got, len) = hash_file(&loc.file, digest)?;
        return verdict(digest, got, len, loc.file_len);
    }
    if digest.func() != HashFn::Blake3 {
        // No split hash for other functions: copy, then verify the source.
        let mut src = &loc.file;
        let copied = io::copy(&mut src, &mut out)
            .ctx(|| format!("copying blob {digest} to {}", dest.display()))?;
        let (got, len) = hash_file(&loc.file, digest)?;
        return verdict(digest, got, len.min(copied), loc.file_len);
    }
    let expected = loc.file_len;
    let split = SplitHash::new(&loc.file, expected);
    let copied = std::thread::scope(|s| {
        let hasher = s.spawn(|| split.work(true));
        let mut src = &loc.file;
        let copied = io::copy(&mut src, &mut out);
        split.work(false); // help with what is left
        if hasher.join().is_err() {
            return Err(Error::io(
                format!("hashing blob {digest}"),
                io::Error::other("hashing thread panicked"),
            ));
        }
        copied.ctx(|| format!("copying blob {digest} to {}", dest.display()))
    })?;
    let got = split
        .finish()
        .map_err(|e| Error::io(format!("hashing blob {digest}"), e))?;
    if copied != expected {
        return Err(Error::corrupt(
            format!("blob {digest}"),
            "changed while it was being copied",
        ));
    }
    verdict(digest, got, expected, expected)
}

fn verdict(digest: &Digest, got: Digest, len: u64, expected_len: u64) -> Result<()> {
    if got == *digest && len == expected_len {
        Ok(())
    } else {
        Err(Error::corrupt(
            format!("blob {digest}"),
            "stored bytes do not match the digest",
        ))
    }
}

/// Decompress a zstd blob into `dest`, verifying as it goes.
fn decompress_to(loc: Located, digest: &Digest, dest: &Path) -> Result<()> {
    let (mut src, size) = Source::open(loc, digest)?;
    let mut out = create_dest(dest)?;
    let mut v = Verifier::new(*digest, size);
    let mut buf = vec![0u8; larder_core::store::CHUNK_SIZE];
    loop {
        let n = src.fill(&mut buf, digest)?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n])?;
        out.write_all(&buf[..n])
            .ctx(|| format!("writing {}", dest.display()))?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_hash_matches_blake3_for_awkward_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(PIECE * 5 + 3)).map(|i| (i % 251) as u8).collect();
        for len in [
            1,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            2 * PIECE,
            2 * PIECE + 1,
            3 * PIECE - 1,
            4 * PIECE,
            5 * PIECE + 3,
        ] {
            let d = &data[..len as usize];
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, d).unwrap();
            let file = File::open(&path).unwrap();
            let split = SplitHash::new(&file, len);
            std::thread::scope(|s| {
                s.spawn(|| split.work(true));
                split.work(false);
            });
            assert_eq!(split.finish().unwrap(), Digest::of(d), "length {len}");
        }
    }
}

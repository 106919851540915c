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

use larder_core::error::IoResultExt;
use larder_core::{Digest, Error, Placement, Result};

use crate::core::{Layout, remove_if_exists};
use crate::reader::{Located, Source, Verifier, locate};

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

/// Hash a blob file in place (memory-mapped, on every core).
fn hash_path(path: &Path, digest: &Digest) -> Result<(Digest, u64)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)
        .map_err(|e| Error::io(format!("hashing blob {digest}"), e))?;
    Ok((Digest::from(h.finalize()), h.count()))
}

fn check_linked(loc: &Located, digest: &Digest) -> Result<()> {
    let (got, len) = hash_path(&loc.path, digest)?;
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
        let (got, len) = hash_path(&loc.path, digest)?;
        return verdict(digest, got, len, loc.file_len);
    }
    let path = loc.path.clone();
    let expected = loc.file_len;
    let (hashed, copied) = std::thread::scope(|s| {
        let hasher = s.spawn(|| {
            // One thread: the other core is busy copying.
            let mut h = blake3::Hasher::new();
            h.update_mmap(&path)
                .map(|h| (Digest::from(h.finalize()), h.count()))
        });
        let mut src = &loc.file;
        let copied = io::copy(&mut src, &mut out);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")));
        (hashed, copied)
    });
    let copied = copied.ctx(|| format!("copying blob {digest} to {}", dest.display()))?;
    let (got, len) = hashed.map_err(|e| Error::io(format!("hashing blob {digest}"), e))?;
    if copied != len {
        return Err(Error::corrupt(
            format!("blob {digest}"),
            "changed while it was being copied",
        ));
    }
    verdict(digest, got, len, expected)
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

//! The stat cache: (device, inode, size, mtime, ctime) → digest, so an unchanged input tree is
//! re-signed from `stat` calls alone.
//!
//! It lives in one small binary file in the cache directory, loaded whole into memory (a few
//! hundred thousand records load in milliseconds, where a database lookup per file would not
//! meet the re-sign budget), and written back atomically (temporary file + rename) when changed.
//! Concurrent processes may overwrite each other's additions: it is a cache, and losing records
//! only costs a re-hash.
//!
//! Racy files (modified within [`RACY_WINDOW_NS`] of being hashed) are recorded but not trusted,
//! as git does with its index: a write in the same timestamp tick could otherwise go unseen.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::{IoResultExt, Result};

const MAGIC: &[u8; 8] = b"LRDSTAT1";
const RECORD_LEN: usize = 8 * 7 + 32;
/// Records hashed less than this long after their file's last change are not trusted.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;
/// Past this many records the cache starts afresh rather than grow without bound.
pub const MAX_RECORDS: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    hashed_at_ns: i64,
    mode: u32,
    digest: Digest,
}

/// What the stat cache knows of a file, from its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
}

impl FileStamp {
    /// Stamp from metadata.
    pub fn from_metadata(m: &fs::Metadata) -> Self {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            mode: m.mode(),
        }
    }
    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Whether any execute bit is set.
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// A stat cache, shared by threads of one process.
#[derive(Debug)]
pub struct StatCache {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(u64, u64), Record>,
    dirty: bool,
}

impl StatCache {
    /// An empty cache that is never saved.
    pub fn in_memory() -> Self {
        StatCache {
            path: None,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Load the cache saved at `path`. A missing or unreadable file gives an empty cache (it is
    /// only a cache); a corrupt one is ignored and overwritten on the next save.
    pub fn load(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut map = HashMap::new();
        if let Ok(bytes) = fs::read(&path) {
            if bytes.len() >= MAGIC.len()
                && &bytes[..MAGIC.len()] == MAGIC
                && (bytes.len() - MAGIC.len()).is_multiple_of(RECORD_LEN)
            {
                map.reserve((bytes.len() - MAGIC.len()) / RECORD_LEN);
                for rec in bytes[MAGIC.len()..].chunks_exact(RECORD_LEN) {
                    let u = |i: usize| {
                        u64::from_le_bytes(rec[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
                    };
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(&rec[56..88]);
                    map.insert(
                        (u(0), u(1)),
                        Record {
                            size: u(2),
                            mtime_ns: u(3) as i64,
                            ctime_ns: u(4) as i64,
                            hashed_at_ns: u(5) as i64,
                            mode: u(6) as u32,
                            digest: Digest::blake3(digest),
                        },
                    );
                }
            } else {
                tracing::debug!("ignoring malformed stat cache {}", path.display());
            }
        }
        StatCache {
            path: Some(path),
            inner: Mutex::new(Inner { map, dirty: false }),
        }
    }

    /// The digest recorded for a file with exactly this stamp, if trusted.
    pub fn lookup(&self, stamp: &FileStamp) -> Option<Digest> {
        let inner = self.inner.lock().ok()?;
        let rec = inner.map.get(&(stamp.dev, stamp.ino))?;
        let same = rec.size == stamp.size
            && rec.mtime_ns == stamp.mtime_ns
            && rec.ctime_ns == stamp.ctime_ns
            && rec.mode == stamp.mode;
        let racy = rec.hashed_at_ns - rec.mtime_ns.max(rec.ctime_ns) < RACY_WINDOW_NS;
        (same && !racy).then_some(rec.digest)
    }

    /// Record a freshly computed digest.
    pub fn insert(&self, stamp: &FileStamp, digest: Digest, hashed_at_ns: i64) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.map.len() >= MAX_RECORDS {
                inner.map.clear();
            }
            inner.map.insert(
                (stamp.dev, stamp.ino),
                Record {
                    size: stamp.size,
                    mtime_ns: stamp.mtime_ns,
                    ctime_ns: stamp.ctime_ns,
                    hashed_at_ns,
                    mode: stamp.mode,
                    digest,
                },
            );
            inner.dirty = true;
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the cache back if it changed (atomically).
    ///
    /// # Errors
    /// [`crate::Error::Io`] if the file cannot be written.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        if !inner.dirty {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(MAGIC.len() + inner.map.len() * RECORD_LEN);
        buf.extend_from_slice(MAGIC);
        for ((dev, ino), r) in &inner.map {
            for v in [
                *dev,
                *ino,
                r.size,
                r.mtime_ns as u64,
                r.ctime_ns as u64,
                r.hashed_at_ns as u64,
                r.mode as u64,
            ] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            buf.extend_from_slice(r.digest.as_bytes());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(&buf)
            .ctx(|| format!("writing {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))?;
        inner.dirty = false;
        Ok(())
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_racy_records() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs::write(&f, b"x").unwrap();
        let stamp = FileStamp::from_metadata(&fs::metadata(&f).unwrap());
        let cache_path = dir.path().join("stat");
        let c = StatCache::load(&cache_path);
        // Hashed right after the write: racy, not trusted.
        c.insert(&stamp, Digest::of(b"x"), now_ns());
        assert_eq!(c.lookup(&stamp), None);
        // Hashed long after: trusted, and survives a save/load.
        c.insert(&stamp, Digest::of(b"x"), now_ns() + 10 * RACY_WINDOW_NS);
        assert_eq!(c.lookup(&stamp), Some(Digest::of(b"x")));
        c.save().unwrap();
        let c2 = StatCache::load(&cache_path);
        assert_eq!(c2.lookup(&stamp), Some(Digest::of(b"x")));
        // Any change of the stamp misses.
        fs::write(&f, b"yy").unwrap();
        let stamp2 = FileStamp::from_metadata(&fs::metadata(&f).unwrap());
        assert_eq!(c2.lookup(&stamp2), None);
        // A corrupt file loads as empty.
        fs::write(&cache_path, b"garbage").unwrap();
        assert!(StatCache::load(&cache_path).is_empty());
    }
}

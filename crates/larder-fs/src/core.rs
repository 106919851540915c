//! The cache directory's layout, and the small file-system helpers every part shares.
//!
//! ```text
//! <root>/entries/ab/<storage name>    entries (ab = the name's first two hex digits)
//! <root>/blobs/ab/<digest hex>        raw blobs: the exact bytes, read-only (0444)
//! <root>/blobs/ab/<digest hex>.zst    zstd-compressed blobs
//! <root>/sha256/ab/<sha256 hex>[.zst] SHA-256 blobs (standalone: see [`standalone_name`])
//! <root>/tmp/                         writes in progress, renamed into place when complete
//! <root>/index.sqlite                 access metadata (rebuildable from a scan)
//! <root>/index.lock, <root>/trim.lock advisory locks
//! ```
//!
//! File names are built only from storage names (64 hex digits, see
//! [`Key::storage_name`](larder_core::Key::storage_name)) and digests; nothing a caller writes
//! ever becomes part of a path.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use larder_core::error::IoResultExt;
use larder_core::{Digest, HashFn, Result};

/// Suffix of compressed blob files.
pub(crate) const ZST_SUFFIX: &str = ".zst";
/// The allocation unit assumed when accounting disk usage.
pub(crate) const BLOCK: u64 = 4096;

/// Paths inside a cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) entries: PathBuf,
    pub(crate) blobs: PathBuf,
    pub(crate) sha256: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) index: PathBuf,
    pub(crate) index_lock: PathBuf,
    pub(crate) trim_lock: PathBuf,
}

impl Layout {
    /// The layout under `root` (nothing is created).
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout {
            entries: root.join("entries"),
            blobs: root.join("blobs"),
            sha256: root.join("sha256"),
            tmp: root.join("tmp"),
            index: root.join("index.sqlite"),
            index_lock: root.join("index.lock"),
            trim_lock: root.join("trim.lock"),
            root,
        }
    }

    /// Create the top-level directories. The two-digit fan-out directories are made lazily.
    pub(crate) fn create_dirs(&self) -> Result<()> {
        for d in [
            &self.root,
            &self.entries,
            &self.blobs,
            &self.sha256,
            &self.tmp,
        ] {
            fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }

    /// Where the entry with storage name `name` lives. `name` must be a storage name.
    pub(crate) fn entry_path(&self, name: &str) -> PathBuf {
        debug_assert!(is_hex64(name), "not a storage name: {name:?}");
        self.entries.join(&name[..2]).join(name)
    }

    /// The directory of blobs of `func`'s digests.
    pub(crate) fn blob_dir(&self, func: HashFn) -> &Path {
        match func {
            HashFn::Blake3 => &self.blobs,
            HashFn::Sha256 => &self.sha256,
        }
    }

    /// Where blob `digest` lives, raw or compressed (in its function's directory).
    pub(crate) fn blob_path(&self, digest: &Digest, compressed: bool) -> PathBuf {
        let hex = digest.to_hex();
        let dir = self.blob_dir(digest.func()).join(&hex[..2]);
        if compressed {
            dir.join(format!("{hex}{ZST_SUFFIX}"))
        } else {
            dir.join(hex)
        }
    }

    /// Create a new, empty temporary file (mode `0644`) under `tmp/`, with a name no other
    /// writer (thread or process) uses.
    pub(crate) fn create_tmp(&self) -> Result<(PathBuf, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Read once: `getpid` is a syscall, and this runs for every entry written.
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let pid = *PID.get_or_init(std::process::id);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.tmp.join(format!(
                "{}{n:x}-{:x}",
                tmp_prefix(pid),
                nanos_now() & 0xffff_ffff
            ));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path);
            match opened {
                Ok(f) => return Ok((path, f)),
                // A leftover of a crashed process that had our pid: pick another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Someone removed tmp/ (or the whole cache): recreate it once and retry.
                    fs::create_dir_all(&self.tmp)
                        .ctx(|| format!("creating {}", self.tmp.display()))?;
                    let f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&path)
                        .ctx(|| format!("creating {}", path.display()))?;
                    return Ok((path, f));
                }
                Err(e) => {
                    return Err(larder_core::Error::io(
                        format!("creating {}", path.display()),
                        e,
                    ));
                }
            }
        }
    }
}

/// The index name of a standalone blob: a SHA-256 blob is a row of the index's `entries` table
/// of its own (no entry names it), so that it is evicted, counted and refreshed as an entry is.
/// Real entries' names are 64 hex digits, so the two never meet.
pub(crate) fn standalone_name(digest: &Digest) -> String {
    format!("{}/{}", digest.func().name(), digest.to_hex())
}

/// The digest of the standalone blob named `name` in the index, if it names one.
pub(crate) fn standalone_digest(name: &str) -> Option<Digest> {
    let (func, hex) = name.split_once('/')?;
    let func = HashFn::from_name(func).filter(|f| *f != HashFn::Blake3)?;
    is_hex64(hex)
        .then(|| Digest::from_hex_fn(func, hex).ok())
        .flatten()
}

/// Whether blobs of `digest`'s function are standalone (see [`standalone_name`]).
pub(crate) fn is_standalone(digest: &Digest) -> bool {
    digest.func() != HashFn::Blake3
}

/// The prefix of the names [`Layout::create_tmp`] gives the temporary files of process `pid`.
fn tmp_prefix(pid: u32) -> String {
    format!("{pid:x}-")
}

/// Remove the temporary files process `pid` left under `tmp/` in the cache directory `root`:
/// the writes it had in progress when it died. Only for a caller that knows `pid` is not
/// writing there any more (see [`crate::remove_temp_files_of`]). Returns how many it removed.
pub(crate) fn remove_tmp_of(root: &Path, pid: u32) -> io::Result<usize> {
    let prefix = tmp_prefix(pid);
    let dir = match fs::read_dir(Layout::new(root.to_owned()).tmp) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for e in dir {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(&prefix) && e.file_type()?.is_file() {
            match fs::remove_file(e.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}

/// Whether `s` is 64 lowercase hex digits (a storage name or digest).
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `bytes` look like an entry written by a newer larder (valid magic, a format version
/// above the one this build reads). Such entries are misses here but are not removed: a newer
/// larder sharing the cache can read them.
pub(crate) fn is_newer_entry(bytes: &[u8]) -> bool {
    use larder_core::entry::{ENTRY_MAGIC, ENTRY_VERSION};
    bytes.len() >= 6
        && &bytes[..4] == ENTRY_MAGIC
        && u16::from_le_bytes([bytes[4], bytes[5]]) > ENTRY_VERSION
}

/// Disk bytes a file of `len` bytes occupies, as accounted: rounded up to whole 4 KiB blocks,
/// which is what ext4 and xfs allocate (an apparent-size sum would undercount a cache of small
/// entries several times over).
pub(crate) fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Run `op` on `path`; if it fails because `path`'s parent directory is missing, create the
/// parent and run it once more. The fan-out directories are made this way, on first use.
pub(crate) fn with_parent<T>(path: &Path, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            op()
        }
        other => other,
    }
}

/// Set a file's modification time to now (it protects blobs from a concurrent trim's grace
/// window). Returns `false` if the file does not exist.
pub(crate) fn touch(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string; a null `times` means "now" for both times.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::NotFound => Ok(false),
        // Another user's blob in a shared cache: it exists, we just may not touch it.
        io::ErrorKind::PermissionDenied => Ok(true),
        _ => Err(e),
    }
}

/// Modification time of a file in ms since the epoch, `None` if it does not exist.
pub(crate) fn mtime_ms(path: &Path) -> io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(meta_mtime_ms(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A metadata's modification time in ms since the epoch.
pub(crate) fn meta_mtime_ms(m: &fs::Metadata) -> u64 {
    let secs = m.mtime().max(0) as u64;
    let nsec = m.mtime_nsec().max(0) as u64;
    secs * 1000 + nsec / 1_000_000
}

/// Remove a file; `Ok(false)` if it was not there.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Flush a directory's entries to disk (after a rename into it).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Nanoseconds since the epoch (for unique names).
fn nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64
}

/// Free bytes available to unprivileged users on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fan_out_by_two_hex_digits() {
        let l = Layout::new(PathBuf::from("/c"));
        let name = "ab".repeat(32);
        assert_eq!(
            l.entry_path(&name),
            PathBuf::from(format!("/c/entries/ab/{name}"))
        );
        let d = Digest::of(b"x");
        let hex = d.to_hex();
        assert_eq!(
            l.blob_path(&d, true),
            PathBuf::from(format!("/c/blobs/{}/{hex}.zst", &hex[..2]))
        );
        assert!(is_hex64(&hex));
        let s = HashFn::Sha256.digest(b"x");
        let shex = s.to_hex();
        assert_eq!(
            l.blob_path(&s, false),
            PathBuf::from(format!("/c/sha256/{}/{shex}", &shex[..2]))
        );
        assert_eq!(standalone_name(&s), format!("sha256/{shex}"));
        assert_eq!(standalone_digest(&standalone_name(&s)), Some(s));
        assert_eq!(standalone_digest(&name), None);
        assert_eq!(standalone_digest(&format!("blake3/{hex}")), None);
        assert!(!is_hex64(&hex.to_uppercase()));
        assert_eq!(blocks(0), 0);
        assert_eq!(blocks(1), 4096);
        assert_eq!(blocks(4097), 8192);
    }

    #[test]
    fn only_the_named_process_temporary_files_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path().to_owned());
        assert_eq!(remove_tmp_of(dir.path(), 0x1d).expect("no tmp/ yet"), 0);
        layout.create_dirs().expect("dirs");
        let (ours, _) = layout.create_tmp().expect("a temporary file");
        let names = ["1d-0-aa", "1d-7-bb", "1da1-0-cc", "11d-0-dd", "x1d-0-ee"];
        for n in names {
            fs::write(layout.tmp.join(n), b"partial").expect("write");
        }
        assert_eq!(remove_tmp_of(dir.path(), 0x1d).expect("sweep"), 2);
        let mut left: Vec<String> = fs::read_dir(&layout.tmp)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec!["11d-0-dd", "1da1-0-cc", "x1d-0-ee"];
        let ours = ours
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        expected.push(&ours);
        expected.sort();
        assert_eq!(left, expected);
    }
}

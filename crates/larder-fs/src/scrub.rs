//! The scrub: every stored blob read back and hashed, at a bounded rate; a blob whose bytes no
//! longer match its digest is removed (the entries naming it then read as misses, as after any
//! lost blob).
//!
//! Reads skip the hash for a blob whose file is unchanged since it was verified (see
//! [`crate::verified`]); the scrub is what still looks at those bytes. It reads every blob
//! whatever the record says, and records the raw ones it verifies, so after a restart the
//! blobs it has been through are trusted again without waiting for a read. One pass walks the
//! blob directories in order, one blob at a time on the calling thread, sleeping as needed to
//! stay under the rate (bytes read from disk per second). Pages it reads once go to the
//! kernel's inactive list first, so a pass does not push a hot working set out of the page
//! cache the way a second read would.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use larder_core::digest::DigestWriter;
use larder_core::entry::now_ms;
use larder_core::{Digest, Error, HashFn, Result};

use crate::backend::Inner;
use crate::core::ZST_SUFFIX;
use crate::hot::FileId;
use crate::verified::Seen;

/// Bytes read and hashed at a time.
const PIECE: usize = 1 << 20;
/// The longest sleep between checks of the stop switch.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A scrub's live figures, shared with whoever shows them (a server's status page, a progress
/// line), and its stop switch. One scrub at a time per `ScrubProgress`.
#[derive(Debug, Default)]
pub struct ScrubProgress {
    stop: AtomicBool,
    running: AtomicBool,
    passes: AtomicU64,
    pass_blobs_total: AtomicU64,
    pass_bytes_total: AtomicU64,
    pass_blobs_done: AtomicU64,
    pass_bytes_done: AtomicU64,
    pass_corrupt: AtomicU64,
    blobs_checked: AtomicU64,
    bytes_checked: AtomicU64,
    corrupt_removed: AtomicU64,
    unreadable: AtomicU64,
    last_pass_end_ms: AtomicU64,
}

/// What [`ScrubProgress::status`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubStatus {
    /// A pass is under way.
    pub running: bool,
    /// Passes completed.
    pub passes: u64,
    /// Blobs and bytes (as stored) the current or last pass found when it started.
    pub pass_blobs_total: u64,
    /// See `pass_blobs_total`.
    pub pass_bytes_total: u64,
    /// Blobs and bytes the current or last pass has been through.
    pub pass_blobs_done: u64,
    /// See `pass_blobs_done`.
    pub pass_bytes_done: u64,
    /// Damaged blobs the current or last pass removed.
    pub pass_corrupt: u64,
    /// Blobs verified over all passes.
    pub blobs_checked: u64,
    /// Bytes (as stored) read over all passes.
    pub bytes_checked: u64,
    /// Damaged blobs removed over all passes.
    pub corrupt_removed: u64,
    /// Blobs that could not be read (an I/O error other than "gone"), over all passes; left
    /// in place.
    pub unreadable: u64,
    /// When the last complete pass ended, ms since the epoch.
    pub last_pass_end_ms: Option<u64>,
}

impl ScrubStatus {
    /// How far the current (or last) pass is, 0 to 1, by bytes.
    pub fn fraction(&self) -> f64 {
        if self.pass_bytes_total == 0 {
            return if self.running { 0.0 } else { 1.0 };
        }
        (self.pass_bytes_done as f64 / self.pass_bytes_total as f64).min(1.0)
    }
}

impl ScrubProgress {
    /// Figures of a scrub that has not started.
    pub fn new() -> Arc<ScrubProgress> {
        Arc::new(ScrubProgress::default())
    }

    /// Ask the scrub to stop; it does within a piece (1 MiB) or 100 ms, and every later pass
    /// returns at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The figures now.
    pub fn status(&self) -> ScrubStatus {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let end = get(&self.last_pass_end_ms);
        ScrubStatus {
            running: self.running.load(Ordering::Relaxed),
            passes: get(&self.passes),
            pass_blobs_total: get(&self.pass_blobs_total),
            pass_bytes_total: get(&self.pass_bytes_total),
            pass_blobs_done: get(&self.pass_blobs_done),
            pass_bytes_done: get(&self.pass_bytes_done),
            pass_corrupt: get(&self.pass_corrupt),
            blobs_checked: get(&self.blobs_checked),
            bytes_checked: get(&self.bytes_checked),
            corrupt_removed: get(&self.corrupt_removed),
            unreadable: get(&self.unreadable),
            last_pass_end_ms: (end > 0).then_some(end),
        }
    }
}

/// The outcome of one pass ([`FsStore::scrub`](crate::FsStore::scrub)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubReport {
    /// Blobs read to their end and found good.
    pub good: u64,
    /// Damaged blobs found, and removed.
    pub corrupt: Vec<Digest>,
    /// Blobs that could not be read (left in place; see the log).
    pub unreadable: u64,
    /// Blobs removed by someone else while the pass ran.
    pub vanished: u64,
    /// Bytes read (as stored).
    pub bytes: u64,
    /// The pass was stopped before its end.
    pub stopped: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Keeps a pass under its rate: after each piece, sleeps until the bytes read so far are due.
struct Pacer<'a> {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
    progress: &'a ScrubProgress,
}

impl Pacer<'_> {
    /// `n` more bytes were read; wait until they are due (or the scrub is stopped).
    fn read(&mut self, n: u64) {
        self.bytes += n;
        self.progress
            .pass_bytes_done
            .fetch_add(n, Ordering::Relaxed);
        self.progress.bytes_checked.fetch_add(n, Ordering::Relaxed);
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        loop {
            let elapsed = self.start.elapsed();
            if elapsed >= due || self.progress.is_stopped() {
                return;
            }
            std::thread::sleep((due - elapsed).min(STOP_CHECK));
        }
    }
}

/// What reading one blob found.
enum Verdict {
    Good(Seen),
    Corrupt(FileId, String),
    Vanished,
    Unreadable(io::Error),
    Stopped,
}

/// A blob file named by the layout, in the directory of `func`'s blobs: its digest and form.
fn parse_name(func: HashFn, name: &str) -> Option<(Digest, bool)> {
    let (hex, compressed) = match name.strip_suffix(ZST_SUFFIX) {
        Some(hex) => (hex, true),
        None => (name, false),
    };
    Digest::from_hex_fn(func, hex).ok().map(|d| (d, compressed))
}

/// The fan-out directories under `blobs/`, in order.
fn fan_out(blobs: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut dirs: Vec<_> = match fs::read_dir(blobs) {
        Ok(it) => it
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(format!("listing {}", blobs.display()), e)),
    };
    dirs.sort();
    Ok(dirs)
}

/// The blob files of one fan-out directory, in order (a directory that vanished has none).
fn blob_files(func: HashFn, dir: &Path) -> Vec<(String, u64)> {
    let Ok(it) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, u64)> = it
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            parse_name(func, &name)?;
            let meta = e.metadata().ok()?;
            meta.is_file().then_some((name, meta.len()))
        })
        .collect();
    files.sort();
    files
}

/// One pass over the store's blobs (see the module docs).
pub(crate) fn run(
    inner: &Arc<Inner>,
    rate: Option<u64>,
    progress: &ScrubProgress,
) -> Result<ScrubReport> {
    let start = Instant::now();
    let mut report = ScrubReport::default();
    if progress.is_stopped() {
        report.stopped = true;
        return Ok(report);
    }
    let mut dirs = Vec::new();
    for func in HashFn::ALL {
        let fanned = fan_out(inner.layout.blob_dir(func))?;
        dirs.extend(fanned.into_iter().map(|d| (func, d)));
    }
    // Count first, so that progress has a whole to be a part of.
    let (mut blobs_total, mut bytes_total) = (0u64, 0u64);
    for (func, dir) in &dirs {
        for (_, len) in blob_files(*func, dir) {
            blobs_total += 1;
            bytes_total += len;
        }
    }
    let p = progress;
    p.pass_blobs_total.store(blobs_total, Ordering::Relaxed);
    p.pass_bytes_total.store(bytes_total, Ordering::Relaxed);
    p.pass_blobs_done.store(0, Ordering::Relaxed);
    p.pass_bytes_done.store(0, Ordering::Relaxed);
    p.pass_corrupt.store(0, Ordering::Relaxed);
    p.running.store(true, Ordering::Relaxed);
    let mut pacer = Pacer {
        rate,
        start,
        bytes: 0,
        progress: p,
    };
    let mut buf = vec![0u8; PIECE];
    'dirs: for (func, dir) in &dirs {
        for (name, _) in blob_files(*func, dir) {
            let Some((digest, compressed)) = parse_name(*func, &name) else {
                continue;
            };
            let path = dir.join(&name);
            let verdict = check(&path, &digest, compressed, &mut buf, &mut pacer);
            match verdict {
                Verdict::Stopped => {
                    report.stopped = true;
                    break 'dirs;
                }
                Verdict::Good(seen) => {
                    report.good += 1;
                    if !compressed && let Some(v) = &inner.verified {
                        v.record(digest, seen);
                    }
                }
                Verdict::Corrupt(id, why) => {
                    tracing::warn!("larder: scrub: blob {digest} is damaged ({why}); removing it");
                    if let Some(v) = &inner.verified {
                        v.forget(&digest);
                    }
                    if remove_if_same(&path, &id) {
                        inner.index.record_blob_lost(digest);
                    }
                    report.corrupt.push(digest);
                    p.pass_corrupt.fetch_add(1, Ordering::Relaxed);
                    p.corrupt_removed.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Vanished => report.vanished += 1,
                Verdict::Unreadable(e) => {
                    tracing::warn!("larder: scrub: cannot read {}: {e}", path.display());
                    report.unreadable += 1;
                    p.unreadable.fetch_add(1, Ordering::Relaxed);
                }
            }
            p.pass_blobs_done.fetch_add(1, Ordering::Relaxed);
            p.blobs_checked.fetch_add(1, Ordering::Relaxed);
        }
    }
    report.bytes = pacer.bytes;
    report.elapsed = start.elapsed();
    p.running.store(false, Ordering::Relaxed);
    if !report.stopped {
        p.passes.fetch_add(1, Ordering::Relaxed);
        p.last_pass_end_ms.store(now_ms(), Ordering::Relaxed);
    }
    Ok(report)
}

/// Remove the blob file at `path` if it is still the file `id` (not one written there since).
fn remove_if_same(path: &Path, id: &FileId) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if id.same_file(&m) => fs::remove_file(path).is_ok(),
        _ => false,
    }
}

/// Read blob file `path` to its end and hash it.
fn check(
    path: &Path,
    digest: &Digest,
    compressed: bool,
    buf: &mut [u8],
    pacer: &mut Pacer<'_>,
) -> Verdict {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Verdict::Vanished,
        Err(e) => return Verdict::Unreadable(e),
    };
    // The identity before the bytes are read: a write from now on moves its change time.
    let seen = match file.metadata() {
        Ok(m) => Seen::of(&m),
        Err(e) => return Verdict::Unreadable(e),
    };
    let id = seen.id;
    let mut hasher = DigestWriter::for_digest(digest);
    let read = if compressed {
        hash_compressed(file, digest, id.len(), &mut hasher, buf, pacer)
    } else {
        hash_raw(&file, &mut hasher, buf, pacer)
    };
    match read {
        Ok(Hashed::Stopped) => Verdict::Stopped,
        Ok(Hashed::Damaged(why)) => Verdict::Corrupt(id, why),
        Ok(Hashed::Whole) if hasher.finish() == *digest => Verdict::Good(seen),
        Ok(Hashed::Whole) => Verdict::Corrupt(id, "the bytes do not match the digest".into()),
        Err(e) => Verdict::Unreadable(e),
    }
}

enum Hashed {
    Whole,
    Damaged(String),
    Stopped,
}

/// Feed `bytes` to `hasher` on this thread alone (pieces under the size at which a BLAKE3
/// [`DigestWriter`] would take both cores): the scrub is background work.
fn feed(hasher: &mut DigestWriter, bytes: &[u8]) {
    for part in bytes.chunks(PIECE / 2) {
        hasher.update(part);
    }
}

fn hash_raw(
    file: &File,
    hasher: &mut DigestWriter,
    buf: &mut [u8],
    pacer: &mut Pacer<'_>,
) -> io::Result<Hashed> {
    let mut off = 0u64;
    loop {
        if pacer.progress.is_stopped() {
            return Ok(Hashed::Stopped);
        }
        let n = match file.read_at(buf, off) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // The end (a file truncated since it was opened ends early; the digest decides).
            return Ok(Hashed::Whole);
        }
        feed(hasher, &buf[..n]);
        off += n as u64;
        pacer.read(n as u64);
    }
}

/// Counts the (compressed) bytes a decoder reads from its file, for the pace.
struct Counting {
    file: File,
    read: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn hash_compressed(
    mut file: File,
    digest: &Digest,
    file_len: u64,
    hasher: &mut DigestWriter,
    buf: &mut [u8],
    pacer: &mut Pacer<'_>,
) -> io::Result<Hashed> {
    let size = match crate::reader::zstd_content_size(&mut file, digest) {
        Ok(size) => size,
        Err(e) => return Ok(Hashed::Damaged(e.to_string())),
    };
    let mut dec = zstd::stream::read::Decoder::new(Counting { file, read: 0 })?;
    let mut out = 0u64;
    let mut paced = 0u64;
    loop {
        if pacer.progress.is_stopped() {
            return Ok(Hashed::Stopped);
        }
        let n = match dec.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // An error from the file itself, as opposed to from decoding what it holds.
            Err(e) if e.raw_os_error().is_some() => return Err(e),
            Err(e) => return Ok(Hashed::Damaged(format!("cannot decompress: {e}"))),
        };
        let read = dec.get_ref().get_ref().read;
        pacer.read(read - paced);
        paced = read;
        if n == 0 {
            break;
        }
        out += n as u64;
        if out > size {
            return Ok(Hashed::Damaged("longer than its frame header says".into()));
        }
        feed(hasher, &buf[..n]);
    }
    // The decoder may stop before the end of the file (trailing bytes): count them as read.
    pacer.read(file_len.saturating_sub(paced));
    if out != size {
        return Ok(Hashed::Damaged("shorter than its frame header says".into()));
    }
    Ok(Hashed::Whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_file_names_parse_and_others_do_not() {
        let d = Digest::of(b"x");
        assert_eq!(parse_name(HashFn::Blake3, &d.to_hex()), Some((d, false)));
        assert_eq!(
            parse_name(HashFn::Blake3, &format!("{}.zst", d.to_hex())),
            Some((d, true))
        );
        let s = HashFn::Sha256.digest(b"x");
        assert_eq!(parse_name(HashFn::Sha256, &s.to_hex()), Some((s, false)));
        assert_eq!(parse_name(HashFn::Blake3, "notes.txt"), None);
        assert_eq!(
            parse_name(HashFn::Blake3, &format!("{}.tmp", d.to_hex())),
            None
        );
    }

    #[test]
    fn the_pace_holds_the_rate() {
        let progress = ScrubProgress::default();
        let start = Instant::now();
        let mut pacer = Pacer {
            rate: Some(10 << 20),
            start,
            bytes: 0,
            progress: &progress,
        };
        for _ in 0..3 {
            pacer.read(1 << 20);
        }
        // 3 MiB at 10 MiB/s: not before 0.3 s (a lower bound only; a busy machine is slower).
        assert!(
            start.elapsed() >= Duration::from_millis(299),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(progress.status().bytes_checked, 3 << 20);
        progress.stop();
        let before = Instant::now();
        pacer.read(100 << 20);
        assert!(
            before.elapsed() < Duration::from_secs(5),
            "a stopped scrub does not wait"
        );
    }

    /// What a trusted read does not check, shown: a change that leaves the file's identity as
    /// it was recorded (only possible underneath the file system: a disk returning other
    /// bytes) is served as it is, and the scrub is what finds it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_change_that_keeps_the_identity_is_served_and_only_the_scrub_finds_it() {
        use std::os::unix::fs::PermissionsExt;

        use larder_core::{Store, StoreExt};

        use crate::{Compression, FsConfig, FsStore};

        let dir = tempfile::tempdir().expect("temp dir");
        let config = FsConfig::default().with_compression(Compression::Off);
        let store = FsStore::open(dir.path().join("cache"), config).expect("open");
        let mut bytes = vec![0u8; 2 << 20];
        blake3::Hasher::new_derive_key("underneath")
            .finalize_xof()
            .fill(&mut bytes);
        let d = store
            .put_blob_bytes(bytes::Bytes::from(bytes.clone()))
            .await
            .expect("put");
        let inner = store.inner_for_test();
        let path = inner.layout.blob_path(&d, false);
        let mut damaged = bytes.clone();
        damaged[1 << 20] ^= 1;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::write(&path, &damaged).expect("write");
        // The record made to hold the file's identity now, as if the change had kept it.
        let meta = fs::metadata(&path).expect("stat");
        let seen = Seen {
            id: FileId::of(&meta),
            at: std::time::SystemTime::now() + Duration::from_secs(1),
        };
        inner.verified.as_ref().expect("on").record(d, seen);
        let got = store.get_blob_bytes(&d, 4 << 20).await.expect("read");
        assert!(got == Some(damaged), "served unhashed, as it is");
        let reads = store.blob_reads();
        assert_eq!((reads.trusted, reads.hashed_bytes), (1, 0), "{reads:?}");
        let report = store
            .scrub(None, ScrubProgress::new())
            .await
            .expect("scrub");
        assert_eq!(report.corrupt, vec![d]);
        assert!(!path.exists(), "removed");
        assert!(store.get_blob(&d).await.expect("a miss").is_none());
    }
}

//! The access index (`index.sqlite`): sizes, access times, hit counts and blob reference counts,
//! shared by every process using the cache directory.
//!
//! # Batching
//! Reads never wait on a write transaction: the hot paths ([`Index::record_hit`],
//! [`Index::record_insert`], ...) only append to an in-memory queue ([`Pending`]). A background
//! thread writes the queue in one transaction every `flush_interval`, or as soon as it holds
//! [`FLUSH_THRESHOLD`] entry and blob events or access records for [`TOUCHED_THRESHOLD`]
//! distinct entries (hits on an entry already queued only add to its counts, so a busy server
//! hitting the same entries writes them once per interval); [`Index::flush`] writes it on
//! demand, and dropping the store writes it a last time. Events queued by a process that is
//! killed are lost: hit counts and access times are then slightly off (LRU slightly less
//! exact), and entries it wrote are missing from the index until the next rebuild. Nothing is
//! ever lost from the cache itself.
//!
//! # The access journal
//! A short-lived process that only read (a cache hit through `larder exec`) does not write the
//! database at exit, so it pays for no transaction and no WAL checkpoint (fsyncs) when its
//! connections close. Its hits and misses are appended
//! instead to `access.log` beside the index, in one `write` with no fsync
//! ([`Index::flush_quick`]). When the store does not sync its files (`fsync` off, the default),
//! the entries and blobs such a process published or removed go to a journal too
//! (`changes.log`, which a larder that knows only access records leaves alone): a remote
//! hit backfilling the local tier, or a miss stored, then costs no fsync either (SQLite syncs
//! the new WAL's header and its directory at the commit, and the WAL and database at the
//! checkpoint when the last connection closes: four fsyncs). Those records are no less durable
//! than the unsynced files they describe. The next process that writes the database anyway (a
//! put of a store that syncs, a trim, `stats`, a listing, the periodic flush of a long-lived
//! process, or an exit that finds the journal over [`JOURNAL_FOLD_BYTES`]) folds the journal
//! into the same transaction, each record checked against the files like any queued event
//! (below). An append holds a shared lock on the journal and a fold an exclusive one, so no
//! record is appended to a journal already read. A crash may lose the last records: access
//! records are hints (LRU slightly less exact), and an entry or blob whose record is lost is
//! unindexed until the index is rebuilt, as when a process is killed with events queued.
//!
//! # Folds cut short
//! A fold moves the journal aside to `access.log.PID.NANOS-SEQ.folding` (or `changes.log...`),
//! reads it, commits its records and removes it, holding an exclusive lock on the moved file
//! from just after the move until after the removal. A process killed in between leaves the
//! file behind, unlocked (the kernel drops a dead process's locks). The next fold that may
//! afford a listing of the cache directory (a flush other than the one at a process's exit,
//! unless the journal is over [`JOURNAL_FOLD_BYTES`]) takes every such file it can lock, and
//! folds it like a journal ([`Index::take_leftovers`]). The lock, not the PID in the name, says
//! whether the folder is alive: a PID says nothing about a process in another PID namespace
//! (containers sharing a cache volume) or one whose PID was reused. A fold killed after its
//! commit and before its removal (one `unlink`) is folded twice: its hits count twice, and an
//! entry it indexed is indexed afresh (checked against its file again; its hit count restarts).
//! Folding at least once is the better side: a record folded at most once could be lost.
//!
//! # Consistency across processes
//! The entry files are the truth; the index follows them. An insert event carries the inode of
//! the file its writer published, and is applied only if that file is still the one under the
//! name (a later writer's insert, or a trim or delete, wins otherwise). A remove event is applied
//! only if no file is under the name any more.
//!
//! # Standalone blobs
//! A SHA-256 blob (Bazel's and REAPI's CAS) is named by no entry: it is kept for itself. It is
//! a row of the `entries` table named `sha256/<hex>` ([`standalone_name`]) with no blobs of its
//! own, its file (`sha256/ab/<hex>`, raw or `.zst`) standing where an entry file would: so it
//! counts in `entries` and `bytes`, moves up the eviction order when read or found, is ranked
//! by eviction policies and removed by trims like an entry, and is never in the `blobs` table
//! that orphan sweeps walk. Each replaces the `bazel-cas/<sha256>` entry that used to index such
//! a blob, so the figures and budgets keep their meaning. [`Index::list_page`] leaves them out
//! (a listing is of entries, by storage name).
//!
//! # Sizes
//! Every size is the space a file takes on disk: its length rounded up to 4 KiB blocks. The
//! `bytes` counter is the disk usage of the cache: entry files plus every stored blob (each blob
//! counted once, however many entries share it). An entry's own `size` is its file plus all of
//! its blobs: what evicting it frees at most (shared blobs free nothing until their last user
//! goes), which is the figure eviction policies rank by.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use larder_core::entry::{MAX_ENTRY_BYTES, now_ms};
use larder_core::{Digest, Entry, EntryMeta, HashFn, StoreStats};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::core::{
    Layout, ZST_SUFFIX, blocks, is_hex64, is_newer_entry, is_standalone, meta_mtime_ms,
    remove_if_exists, standalone_digest, standalone_name,
};
use crate::error::{Error, SqlResultExt};

/// The index schema this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 1;
/// Entry and blob events queued at which the background thread is woken to flush early.
pub(crate) const FLUSH_THRESHOLD: usize = 1000;
/// Distinct entries with queued access records at which the background thread is woken to
/// flush early.
pub(crate) const TOUCHED_THRESHOLD: usize = 50_000;
/// Queue length past which new events are dropped (the database is stuck; warn once).
const MAX_PENDING: usize = 200_000;
/// The access journal's file name, beside the index.
const JOURNAL: &str = "access.log";
/// The journal of batches that hold entry and blob events too (a larder that knows only
/// access records does not read it, so it does not drop them).
const CHANGES: &str = "changes.log";

/// Past this size the journal is folded by the process that would append to it.
const JOURNAL_FOLD_BYTES: u64 = 1 << 20;

/// A queue holding more entry and blob events than this goes to the database even where it
/// could go to the changes journal: each event is written as a line now, then parsed, checked
/// against its file and applied by the next fold (often a trim or `stats`, which then pays for
/// it), so past a few hundred one transaction now costs less (a long-lived process's last flush,
/// a bulk import; not a one-shot hit or store). Hits alone still go to the access journal: a
/// hit's record is one counter per entry, cheap to fold, and costly to write row by row now.
const JOURNAL_MAX_EVENTS: usize = 256;

/// A journal larger than this is not read (it can only be a damaged or foreign file).
const JOURNAL_MAX_BYTES: u64 = 64 << 20;

/// The end of a journal's name once moved aside to be folded.
const FOLDING: &str = ".folding";

/// How long ago a file moved aside by a larder that predates the folding lock (named
/// `access.log.PID.folding`, unlocked while it commits) must have been moved (its inode's change
/// time) before another fold takes it as left by a killed process: such folds take milliseconds.
const UNLOCKED_FOLDING_AGE: Duration = Duration::from_secs(60);

/// How long a connection waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    name TEXT PRIMARY KEY,
    file_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    cost_ms INTEGER NOT NULL DEFAULT 0,
    blobs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access_ms, name);
CREATE TABLE IF NOT EXISTS blobs (
    digest BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_unreferenced ON blobs (digest) WHERE refs <= 0;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES
    ('entries', 0), ('bytes', 0), ('hits', 0), ('misses', 0), ('bytes_saved', 0), ('ms_saved', 0);
";

/// An entry file just published, to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry {
    pub(crate) name: String,
    pub(crate) file_size: u64,
    pub(crate) ino: u64,
    pub(crate) created_ms: u64,
    pub(crate) cost_ms: u64,
    pub(crate) blobs: Vec<Digest>,
    pub(crate) at_ms: u64,
}

/// An index change waiting to be written, in the order it happened.
#[derive(Debug, Clone)]
enum Op {
    Insert(NewEntry),
    Remove(String),
    BlobWritten { digest: Digest, stored: u64 },
    BlobLost(Digest),
}

#[derive(Debug, Default, Clone, Copy)]
struct Touch {
    hits: u64,
    last_ms: u64,
}

/// Events not yet written to the database.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    ops: Vec<Op>,
    touched: HashMap<String, Touch>,
    hits: u64,
    misses: u64,
    bytes_saved: u64,
    ms_saved: u64,
    warned_full: bool,
}

impl Pending {
    fn len(&self) -> usize {
        self.ops.len() + self.touched.len()
    }

    /// Whether the queue is to be written before the interval is up.
    fn urgent(&self) -> bool {
        self.ops.len() >= FLUSH_THRESHOLD || self.touched.len() >= TOUCHED_THRESHOLD
    }

    fn is_empty(&self) -> bool {
        self.len() == 0 && self.hits == 0 && self.misses == 0
    }

    fn take(&mut self) -> Pending {
        let warned_full = self.warned_full;
        let batch = std::mem::take(self);
        self.warned_full = warned_full;
        batch
    }

    /// Put a batch that failed to write back in front of what arrived since.
    fn restore(&mut self, mut older: Pending) {
        older.ops.append(&mut self.ops);
        self.ops = older.ops;
        for (name, t) in older.touched {
            let cur = self.touched.entry(name).or_default();
            cur.hits += t.hits;
            cur.last_ms = cur.last_ms.max(t.last_ms);
        }
        self.hits += older.hits;
        self.misses += older.misses;
        self.bytes_saved += older.bytes_saved;
        self.ms_saved += older.ms_saved;
    }
}

/// Counter changes made by one transaction.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delta {
    pub(crate) entries: i64,
    pub(crate) bytes: i64,
    hits: i64,
    misses: i64,
    bytes_saved: i64,
    ms_saved: i64,
}

impl Delta {
    /// Add the changes to the counters table.
    pub(crate) fn apply(&self, tx: &Transaction<'_>) -> Result<(), Error> {
        let mut stmt = tx
            .prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")
            .sql("updating counters")?;
        for (name, v) in [
            ("entries", self.entries),
            ("bytes", self.bytes),
            ("hits", self.hits),
            ("misses", self.misses),
            ("bytes_saved", self.bytes_saved),
            ("ms_saved", self.ms_saved),
        ] {
            if v != 0 {
                stmt.execute(params![name, v]).sql("updating counters")?;
            }
        }
        Ok(())
    }
}

/// The index of one cache directory.
#[derive(Debug)]
pub(crate) struct Index {
    layout: Layout,
    /// Whether a quick flush may leave new and removed entries and blobs in the access journal
    /// too (the store does not sync its files: see [`Index::flush_quick`]).
    journal_changes: bool,
    /// Opened by [`Index::open`] when the database has to be created, upgraded or checked, else
    /// on first use ([`Index::writer`]): a one-shot cache hit writes its records to the access
    /// journal and never needs it.
    writer: Mutex<Option<Connection>>,
    /// Opened on first use: a cache hit reads no index, and each connection costs its
    /// process a schema parse.
    reader: Mutex<Option<Connection>>,
    pending: Mutex<Pending>,
    wake: Condvar,
    shutdown: AtomicBool,
}

/// A journal moved aside to be folded: removed by [`Index::drop_journal`] once its records are
/// committed, locked exclusively until then (so other folds know it is being folded).
#[derive(Debug)]
pub(crate) struct Taken {
    path: PathBuf,
    _lock: Option<fs::File>,
}

/// A name to move the journal `name` aside to, unique among every process folding this
/// directory: the PID (for whoever looks), the time in nanoseconds (processes of the same PID in
/// other namespaces) and a count (folds of one process in the same nanosecond). A fold
/// replacing another's moved file would lose its records.
fn folding_name(name: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{name}.{}.{nanos}-{seq}{FOLDING}", std::process::id())
}

/// Whether `path` still names the file `f` is open on.
fn still_named(f: &fs::File, path: &Path) -> bool {
    let (Ok(ours), Ok(named)) = (f.metadata(), fs::symlink_metadata(path)) else {
        return false;
    };
    (ours.dev(), ours.ino()) == (named.dev(), named.ino())
}

/// A journal's bytes, `None` if it is over [`JOURNAL_MAX_BYTES`].
fn read_journal(f: &mut fs::File) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let len = f.metadata()?.len();
    if len > JOURNAL_MAX_BYTES {
        return Ok(None);
    }
    let mut text = Vec::with_capacity(len as usize);
    f.read_to_end(&mut text)?;
    Ok(Some(text))
}

/// The records of the journal `taken` read into `read`; none if it could not be read (the file
/// is removed all the same: it would fail again).
fn journal_records(taken: &Path, read: std::io::Result<Option<Vec<u8>>>) -> Pending {
    match read {
        Ok(Some(text)) => parse_journal(&String::from_utf8_lossy(&text)),
        Ok(None) => {
            tracing::warn!(
                "larder: the access journal {} is over {JOURNAL_MAX_BYTES} bytes; dropped",
                taken.display()
            );
            Pending::default()
        }
        Err(e) => {
            tracing::debug!("larder: cannot read {}: {e}", taken.display());
            Pending::default()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere is no reason to
    // stop using it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Open a connection with the settings every connection uses.
fn open_conn(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).sql("opening")?;
    conn.busy_timeout(BUSY_TIMEOUT).sql("configuring")?;
    // journal_mode answers with a row; it is also the first statement that reads the file, so
    // a damaged file shows up here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .sql("configuring")?;
    if !mode.eq_ignore_ascii_case("wal") {
        set_wal(&conn)?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .sql("configuring")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Switch a fresh database to WAL (the mode is stored in the file, so this happens once).
///
/// Several processes opening a new cache race here. Switching needs an exclusive lock, and
/// SQLite answers BUSY at once, without calling the busy handler, when two connections that both
/// read the file try to upgrade (its deadlock avoidance): retry with a short backoff instead.
fn set_wal(conn: &Connection) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e).sql("configuring"),
        }
    }
}

/// The records of an access journal (see [`Index::append_journal`] for the lines); lines that
/// do not parse are skipped.
fn parse_journal(text: &str) -> Pending {
    let mut p = Pending::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match f[..] {
            ["h", name, _, _] => {
                let (Some(last), Some(hits)) = (num(2), num(3)) else {
                    continue;
                };
                let t = p.touched.entry(name.to_owned()).or_default();
                t.hits += hits;
                t.last_ms = t.last_ms.max(last);
            }
            ["c", _, _, _, _] => {
                if let (Some(h), Some(m), Some(b), Some(ms)) = (num(1), num(2), num(3), num(4)) {
                    p.hits += h;
                    p.misses += m;
                    p.bytes_saved += b;
                    p.ms_saved += ms;
                }
            }
            ["i", name, _, _, _, _, _, digests] => {
                let fields = (num(2), num(3), num(4), num(5), num(6));
                let (Some(file_size), Some(ino), Some(created_ms), Some(cost_ms), Some(at_ms)) =
                    fields
                else {
                    continue;
                };
                let Some(blobs) = parse_digest_list(digests) else {
                    continue;
                };
                p.ops.push(Op::Insert(NewEntry {
                    name: name.to_owned(),
                    file_size,
                    ino,
                    created_ms,
                    cost_ms,
                    blobs,
                    at_ms,
                }));
            }
            ["r", name] => p.ops.push(Op::Remove(name.to_owned())),
            ["b", hex, _] => {
                if let (Ok(digest), Some(stored)) = (Digest::from_hex(hex), num(2)) {
                    p.ops.push(Op::BlobWritten { digest, stored });
                }
            }
            ["l", hex] => {
                if let Ok(d) = Digest::from_hex(hex) {
                    p.ops.push(Op::BlobLost(d));
                }
            }
            _ => {}
        }
    }
    p
}

/// Digests written one after the other in hex (`-` for none), as in a journal's `i` line.
fn parse_digest_list(text: &str) -> Option<Vec<Digest>> {
    if text == "-" {
        return Some(Vec::new());
    }
    if !text.len().is_multiple_of(64) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(64)
        .map(|i| Digest::from_hex(&text[i..i + 64]).ok())
        .collect()
}

/// The journal lines for `batch`: its entry and blob events in order, its access records, and
/// one line of counters.
fn journal_text(batch: &Pending) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64 * (batch.touched.len() + 1) + 160 * batch.ops.len());
    for op in &batch.ops {
        let _ = match op {
            Op::Insert(e) => {
                let digests = if e.blobs.is_empty() {
                    "-".to_owned()
                } else {
                    e.blobs.iter().map(Digest::to_hex).collect()
                };
                writeln!(
                    text,
                    "i {} {} {} {} {} {} {digests}",
                    e.name, e.file_size, e.ino, e.created_ms, e.cost_ms, e.at_ms
                )
            }
            Op::Remove(name) => writeln!(text, "r {name}"),
            Op::BlobWritten { digest, stored } => writeln!(text, "b {} {stored}", digest.to_hex()),
            Op::BlobLost(d) => writeln!(text, "l {}", d.to_hex()),
        };
    }
    for (name, t) in &batch.touched {
        let _ = writeln!(text, "h {name} {} {}", t.last_ms, t.hits);
    }
    let _ = writeln!(
        text,
        "c {} {} {} {}",
        batch.hits, batch.misses, batch.bytes_saved, batch.ms_saved
    );
    text
}

/// Whether every name in `batch` can be written as one field of a journal line.
fn journal_safe(batch: &Pending) -> bool {
    let plain = |n: &str| !n.is_empty() && !n.contains([' ', '\n', '\r']);
    batch.touched.keys().all(|n| plain(n))
        && batch.ops.iter().all(|op| match op {
            Op::Insert(e) => plain(&e.name),
            Op::Remove(name) => plain(name),
            Op::BlobWritten { .. } | Op::BlobLost(_) => true,
        })
}

/// The connection in a guard [`Index::writer`] returned.
fn writer_of<'a>(
    guard: &'a mut MutexGuard<'_, Option<Connection>>,
) -> larder_core::Result<&'a mut Connection> {
    guard
        .as_mut()
        .ok_or_else(|| io_store("using the index".into(), std::io::Error::other("not open")))
}

/// Whether the database file's header (SQLite's file format: the magic string at offset 0, the
/// user version at offset 60, big-endian) names this build's schema, so opening it can wait until
/// it is needed. Anything else (no file, an old, newer or damaged one) is opened, and created,
/// upgraded or rebuilt, at once. A header older than the write-ahead log (a database just
/// created, not yet checkpointed) reads as not current, which only costs the eager open.
fn header_says_current(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let read = fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && &head[..16] == b"SQLite format 3\0"
        && i64::from(u32::from_be_bytes([head[60], head[61], head[62], head[63]])) == SCHEMA_VERSION
}

fn schema_version(conn: &Connection) -> Result<i64, Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .sql("reading the schema version")
}

/// Take an exclusive advisory lock on `path` (blocking), creating the file.
pub(crate) fn lock_file(path: &Path, wait: bool) -> std::io::Result<Option<fs::File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if wait {
        f.lock()?;
        return Ok(Some(f));
    }
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn remove_db_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        remove_if_exists(Path::new(&p))?;
    }
    Ok(())
}

fn io_store(context: String, e: std::io::Error) -> larder_core::Error {
    larder_core::Error::io(context, e)
}

/// Concatenated digests, as stored in `entries.blobs`.
fn pack_digests(ds: &[Digest]) -> Vec<u8> {
    ds.iter().flat_map(|d| *d.as_bytes()).collect()
}

/// The digests in an `entries.blobs` value.
pub(crate) fn unpack_digests(b: &[u8]) -> Vec<Digest> {
    b.chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Digest::blake3))
        .collect()
}

/// Stored size of a blob according to the files present (both forms, if both are).
fn stat_blob(layout: &Layout, d: &Digest) -> u64 {
    [false, true]
        .iter()
        .filter_map(|&c| fs::metadata(layout.blob_path(d, c)).ok())
        .map(|m| blocks(m.len()))
        .sum()
}

fn blob_exists(layout: &Layout, d: &Digest) -> bool {
    [false, true]
        .iter()
        .any(|&c| fs::symlink_metadata(layout.blob_path(d, c)).is_ok())
}

/// The inode of the file an `entries` row stands for: the entry file, or for a standalone
/// blob (see [`standalone_name`]) either form of the blob's file.
fn row_file_ino(layout: &Layout, name: &str) -> Option<u64> {
    match standalone_digest(name) {
        None => fs::symlink_metadata(layout.entry_path(name))
            .ok()
            .map(|m| m.ino()),
        Some(d) => [false, true]
            .iter()
            .find_map(|&c| fs::symlink_metadata(layout.blob_path(&d, c)).ok())
            .map(|m| m.ino()),
    }
}

/// Add a reference to blob `d`; returns its stored size.
fn ref_blob(
    tx: &Transaction<'_>,
    layout: &Layout,
    d: &Digest,
    delta: &mut Delta,
) -> Result<u64, Error> {
    let size: Option<i64> = tx
        .prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE digest = ?1 RETURNING size")
        .sql("referencing a blob")?
        .query_row(params![&d.as_bytes()[..]], |r| r.get(0))
        .optional()
        .sql("referencing a blob")?;
    if let Some(s) = size {
        return Ok(s.max(0) as u64);
    }
    let stored = stat_blob(layout, d);
    tx.prepare_cached("INSERT INTO blobs (digest, size, refs) VALUES (?1, ?2, 1)")
        .sql("referencing a blob")?
        .execute(params![&d.as_bytes()[..], stored as i64])
        .sql("referencing a blob")?;
    delta.bytes += stored as i64;
    Ok(stored)
}

/// Drop a reference to blob `d`; returns (refs left, stored size) if the blob is indexed.
pub(crate) fn unref_blob(tx: &Transaction<'_>, d: &Digest) -> Result<Option<(i64, u64)>, Error> {
    tx.prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE digest = ?1 RETURNING refs, size")
        .sql("releasing a blob")?
        .query_row(params![&d.as_bytes()[..]], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .optional()
        .sql("releasing a blob")
}

/// Delete an entry row (if present), releasing its blobs. Returns its file size if it existed.
pub(crate) fn delete_entry_row(
    tx: &Transaction<'_>,
    name: &str,
    delta: &mut Delta,
    mut released: impl FnMut(Digest, i64, u64),
) -> Result<Option<u64>, Error> {
    let row: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("DELETE FROM entries WHERE name = ?1 RETURNING file_size, blobs")
        .sql("removing an entry")?
        .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .sql("removing an entry")?;
    let Some((file_size, blobs)) = row else {
        return Ok(None);
    };
    let file_size = file_size.max(0) as u64;
    delta.entries -= 1;
    delta.bytes -= blocks(file_size) as i64;
    for d in unpack_digests(&blobs) {
        if let Some((refs, size)) = unref_blob(tx, &d)? {
            released(d, refs, size);
        }
    }
    Ok(Some(file_size))
}

impl Index {
    /// Open the index of `layout`, creating or rebuilding it (by scanning the directory) when it
    /// is missing or damaged.
    pub(crate) fn open(layout: &Layout, journal_changes: bool) -> larder_core::Result<Index> {
        let writer = if header_says_current(&layout.index) {
            None
        } else {
            Some(open_ready(layout)?)
        };
        Ok(Index {
            layout: layout.clone(),
            journal_changes,
            writer: Mutex::new(writer),
            reader: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        })
    }

    fn push(&self, f: impl FnOnce(&mut Pending)) {
        let mut p = lock(&self.pending);
        if p.len() >= MAX_PENDING {
            if !p.warned_full {
                p.warned_full = true;
                tracing::warn!(
                    "larder index at {} is not keeping up; dropping access records",
                    self.layout.index.display()
                );
            }
            return;
        }
        // Wake the flusher when the queue becomes urgent, once (it checks again after each
        // flush), not on every event after that.
        let was_urgent = p.urgent();
        f(&mut p);
        if !was_urgent && p.urgent() {
            self.wake.notify_one();
        }
    }

    /// Record a published entry file.
    pub(crate) fn record_insert(&self, e: NewEntry) {
        self.push(|p| p.ops.push(Op::Insert(e)));
    }

    /// Record that the entry file `name` was removed.
    pub(crate) fn record_remove(&self, name: String) {
        self.push(|p| p.ops.push(Op::Remove(name)));
    }

    /// Record a published blob.
    pub(crate) fn record_blob_written(&self, digest: Digest, stored: u64) {
        self.push(|p| p.ops.push(Op::BlobWritten { digest, stored }));
    }

    /// Record that a blob's files were removed (they failed verification).
    pub(crate) fn record_blob_lost(&self, digest: Digest) {
        if is_standalone(&digest) {
            self.record_remove(standalone_name(&digest));
            return;
        }
        self.push(|p| p.ops.push(Op::BlobLost(digest)));
    }

    /// Record a published standalone blob (see [`standalone_name`]) whose file is `len` bytes
    /// with inode `ino`: a row of its own, evicted and counted like an entry's.
    pub(crate) fn record_standalone(&self, digest: &Digest, len: u64, ino: u64) {
        let now = now_ms();
        self.record_insert(NewEntry {
            name: standalone_name(digest),
            file_size: len,
            ino,
            created_ms: now,
            cost_ms: 0,
            blobs: Vec::new(),
            at_ms: now,
        });
    }

    /// Record a hit on entry `name`.
    pub(crate) fn record_hit(&self, name: &str, bytes: u64, cost_ms: u64) {
        let now = now_ms();
        self.push(|p| {
            p.hits += 1;
            p.bytes_saved += bytes;
            p.ms_saved += cost_ms;
            match p.touched.get_mut(name) {
                Some(t) => {
                    t.hits += 1;
                    t.last_ms = t.last_ms.max(now);
                }
                None => {
                    p.touched.insert(
                        name.to_owned(),
                        Touch {
                            hits: 1,
                            last_ms: now,
                        },
                    );
                }
            }
        });
    }

    /// Record accesses to the entries `names` that are not hits (an existence check): they move
    /// up the eviction order without counting in the hit statistics.
    pub(crate) fn record_touches<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let now = now_ms();
        self.push(|p| {
            for name in names {
                match p.touched.get_mut(name) {
                    Some(t) => t.last_ms = t.last_ms.max(now),
                    None => {
                        p.touched.insert(
                            name.to_owned(),
                            Touch {
                                hits: 0,
                                last_ms: now,
                            },
                        );
                    }
                }
            }
        });
    }

    /// Record a miss.
    pub(crate) fn record_miss(&self) {
        self.push(|p| p.misses += 1);
    }

    /// Run `f` with the write connection (trims use it between flushes).
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> larder_core::Result<T>,
    ) -> larder_core::Result<T> {
        let mut guard = self.writer()?;
        f(writer_of(&mut guard)?)
    }

    /// The write connection, opened (and the database created or rebuilt, as by
    /// [`Index::open`]) on first use.
    fn writer(&self) -> larder_core::Result<MutexGuard<'_, Option<Connection>>> {
        let mut guard = lock(&self.writer);
        if guard.is_none() {
            *guard = Some(open_ready(&self.layout)?);
        }
        Ok(guard)
    }

    /// Write every queued event, the journals, and the journals of folds cut short (see
    /// [`Index::take_leftovers`]), in one transaction.
    pub(crate) fn flush(&self) -> larder_core::Result<()> {
        self.write_queue(true)
    }

    /// Write every queued event and the journals in one transaction; with `leftovers`, also
    /// those of folds cut short, which costs a listing of the cache directory.
    fn write_queue(&self, leftovers: bool) -> larder_core::Result<()> {
        let mut guard = self.writer()?;
        let conn = writer_of(&mut guard)?;
        // Take the queue only once we hold the connection, so batches commit in order.
        let mut batch = lock(&self.pending).take();
        let (mut journal, left) = if leftovers {
            self.take_leftovers(UNLOCKED_FOLDING_AGE)
        } else {
            (Vec::new(), Pending::default())
        };
        let (taken, older) = self.take_journals();
        journal.extend(taken);
        // Each restore goes in front: the leftovers, older than the journals, go first.
        batch.restore(older);
        batch.restore(left);
        if batch.is_empty() {
            self.drop_journal(journal);
            return Ok(());
        }
        match apply(conn, &self.layout, &batch) {
            Ok(()) => {
                self.drop_journal(journal);
                Ok(())
            }
            Err(e) => {
                if e.is_corruption() {
                    tracing::warn!(
                        "larder index {} is damaged ({e}); rebuilding it",
                        self.layout.index.display()
                    );
                    drop(guard);
                    self.drop_journal(journal);
                    self.recreate()?;
                    // The rebuild scanned the files the queued inserts describe; only the access
                    // records are lost.
                    return Ok(());
                }
                // The folded journal's records stay in the queue; its file goes, so they are
                // not counted twice.
                self.drop_journal(journal);
                lock(&self.pending).restore(batch);
                Err(e.into())
            }
        }
    }

    /// Write what is queued as cheaply as it can be kept: to the access journal (one append,
    /// no fsync) if it holds only hits and misses, or if the store does not sync its files
    /// (`journal_changes`: new and removed entries and blobs are then no more durable than the
    /// files they describe); otherwise, when the queue holds more than [`JOURNAL_MAX_EVENTS`]
    /// entry and blob events, or when the journal has grown past [`JOURNAL_FOLD_BYTES`], to the
    /// database by [`Index::flush`]. Only the fold of a journal that has grown looks for the
    /// leftovers of folds cut short (a listing): a process's exit does not.
    pub(crate) fn flush_quick(&self) -> larder_core::Result<()> {
        let mut grown = false;
        {
            let mut p = lock(&self.pending);
            if p.is_empty() {
                return Ok(());
            }
            let name = if p.ops.is_empty() { JOURNAL } else { CHANGES };
            let small = p.ops.len() <= JOURNAL_MAX_EVENTS;
            if (p.ops.is_empty() || self.journal_changes) && small && journal_safe(&p) {
                grown = self.journal_len(name) >= JOURNAL_FOLD_BYTES;
                if !grown {
                    let batch = p.take();
                    drop(p);
                    match self.append_journal(&batch, name) {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            tracing::debug!("larder: cannot append to the access journal: {e}");
                            lock(&self.pending).restore(batch);
                        }
                    }
                }
            }
        }
        self.write_queue(grown)
    }

    fn journal_path(&self, name: &str) -> std::path::PathBuf {
        self.layout.root.join(name)
    }

    fn journal_len(&self, name: &str) -> u64 {
        fs::metadata(self.journal_path(name)).map_or(0, |m| m.len())
    }

    /// Append `batch` to the journal in one `write` ([`journal_text`]): `i NAME FILE_SIZE INO
    /// CREATED_MS COST_MS AT_MS DIGESTS` for an entry file published, `r NAME` for one removed,
    /// `b DIGEST STORED` for a blob published, `l DIGEST` for one lost, `h NAME LAST_MS HITS`
    /// per entry accessed, then `c HITS MISSES BYTES_SAVED MS_SAVED`.
    ///
    /// The append holds a shared lock on the file and checks that the file is still the journal
    /// (not moved aside by [`Index::take_journal`], which takes the exclusive lock after the
    /// move and before reading), so no record lands in a journal already read. It does not wait
    /// for that lock, held until the fold's commit: only a file already moved aside is ever
    /// locked exclusively, so the journal is opened again.
    fn append_journal(&self, batch: &Pending, name: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let text = journal_text(batch);
        let path = self.journal_path(name);
        for _ in 0..16 {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)?;
            match f.try_lock_shared() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => continue,
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            let ours = f.metadata()?;
            let named = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            if named == Some((ours.dev(), ours.ino())) {
                return f.write_all(text.as_bytes());
            }
        }
        Err(std::io::Error::other("the access journal kept moving"))
    }

    /// Both journals' records ([`Index::take_journal`]), and the moved files.
    pub(crate) fn take_journals(&self) -> (Vec<Taken>, Pending) {
        let mut taken = Vec::new();
        let mut records = Pending::default();
        for name in [JOURNAL, CHANGES] {
            if let Some((file, more)) = self.take_journal(name) {
                taken.push(file);
                records.restore(more);
            }
        }
        (taken, records)
    }

    /// Move the journal `name` aside (so appends that follow start a new one) and read it, once
    /// the appends to it in progress are done: the moved file, locked until it is removed once
    /// its records are committed, and the records.
    fn take_journal(&self, name: &str) -> Option<(Taken, Pending)> {
        let path = self.journal_path(name);
        let taken = self.layout.root.join(folding_name(name));
        fs::rename(&path, &taken).ok()?;
        let mut f = match fs::File::open(&taken) {
            Ok(f) => f,
            // Folded by another process in the moment before we locked it (below).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("larder: cannot read {}: {e}", taken.display());
                return Some((
                    Taken {
                        path: taken,
                        _lock: None,
                    },
                    Pending::default(),
                ));
            }
        };
        let read = f.lock().map(|()| {
            // Another fold may have found the file unlocked between the move and the lock,
            // taken it as left by a killed process, folded and removed it.
            still_named(&f, &taken)
        });
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!("larder: cannot lock {}: {e}", taken.display());
                return Some((
                    Taken {
                        path: taken,
                        _lock: None,
                    },
                    Pending::default(),
                ));
            }
        }
        let records = journal_records(&taken, read_journal(&mut f));
        Some((
            Taken {
                path: taken,
                _lock: Some(f),
            },
            records,
        ))
    }

    /// The journals that folds cut short left behind (a process killed between moving a journal
    /// aside and removing it), and their records: every `*.folding` file beside the index that
    /// no living process holds locked, and that, if it was moved aside by a larder that does
    /// not hold that lock (a name with no time in it), was moved at least `unlocked_age` ago.
    ///
    /// Whether the folder is alive is asked of the lock rather than of the PID in the name:
    /// the kernel releases a killed process's locks, while a PID can be reused, or be that of a
    /// process in another PID namespace sharing the directory. Each file taken is locked like a
    /// journal being folded and checked to be still under its name (its folder may have removed
    /// it since the listing), so no two folds read it.
    fn take_leftovers(&self, unlocked_age: Duration) -> (Vec<Taken>, Pending) {
        let mut taken = Vec::new();
        let mut records = Pending::default();
        let dir = match fs::read_dir(&self.layout.root) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::debug!("larder: cannot list {}: {e}", self.layout.root.display());
                return (taken, records);
            }
        };
        for item in dir.flatten() {
            let file_name = item.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let Some(middle) = [JOURNAL, CHANGES].iter().find_map(|j| {
                name.strip_prefix(j)?
                    .strip_prefix('.')?
                    .strip_suffix(FOLDING)
            }) else {
                continue;
            };
            let unlocked_kind = middle.bytes().all(|b| b.is_ascii_digit());
            let path = item.path();
            let Ok(mut f) = fs::File::open(&path) else {
                continue; // removed by its folder since the listing
            };
            match f.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => continue, // being folded
                Err(fs::TryLockError::Error(e)) => {
                    tracing::debug!("larder: cannot lock {}: {e}", path.display());
                    continue;
                }
            }
            if !still_named(&f, &path) {
                continue;
            }
            if unlocked_kind {
                let Ok(meta) = f.metadata() else {
                    continue;
                };
                let moved = std::time::UNIX_EPOCH
                    + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
                let age = std::time::SystemTime::now()
                    .duration_since(moved)
                    .unwrap_or_default();
                if age < unlocked_age {
                    continue;
                }
            }
            tracing::debug!(
                "larder: folding {}, left by a fold cut short",
                path.display()
            );
            records.restore(journal_records(&path, read_journal(&mut f)));
            taken.push(Taken {
                path,
                _lock: Some(f),
            });
        }
        (taken, records)
    }

    /// Remove the folded journals, each before its lock is released.
    fn drop_journal(&self, journal: Vec<Taken>) {
        for taken in journal {
            if let Err(e) = fs::remove_file(&taken.path) {
                tracing::debug!("larder: cannot remove {}: {e}", taken.path.display());
            }
        }
    }

    /// The background flusher's loop: flush every `interval`, or early when the queue is long,
    /// until [`Index::stop`].
    pub(crate) fn run_flusher(&self, interval: Duration) {
        let mut p = lock(&self.pending);
        let mut failed = false;
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                break;
            }
            if failed {
                // Back off for a whole interval: a long queue must not turn a failing database
                // into a retry per event.
                let (guard, _) = self
                    .wake
                    .wait_timeout_while(p, interval, |_| !self.shutdown.load(Ordering::Acquire))
                    .unwrap_or_else(|e| e.into_inner());
                p = guard;
            } else if !p.urgent() {
                // (Events that passed the threshold while we were flushing woke nobody: if the
                // queue is long already, flush again at once.)
                let (guard, _) = self
                    .wake
                    .wait_timeout(p, interval)
                    .unwrap_or_else(|e| e.into_inner());
                p = guard;
            }
            if self.shutdown.load(Ordering::Acquire) {
                break;
            }
            if p.is_empty() {
                continue;
            }
            drop(p);
            failed = match self.flush() {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!("larder: writing the index failed (will retry): {e}");
                    true
                }
            };
            p = lock(&self.pending);
        }
        drop(p);
        if let Err(e) = self.flush_quick() {
            tracing::warn!("larder: writing the index at exit failed: {e}");
        }
    }

    /// Ask the flusher to write what is queued and stop.
    pub(crate) fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        let _guard = lock(&self.pending);
        self.wake.notify_all();
    }

    /// The read connection, opened on first use.
    fn reader(&self) -> larder_core::Result<MutexGuard<'_, Option<Connection>>> {
        let mut guard = lock(&self.reader);
        if guard.is_none() {
            *guard = Some(open_conn(&self.layout.index)?);
        }
        Ok(guard)
    }

    /// Usage figures (what has been flushed).
    pub(crate) fn stats(&self) -> larder_core::Result<StoreStats> {
        let guard = self.reader()?;
        let Some(conn) = guard.as_ref() else {
            return Ok(StoreStats::default());
        };
        let mut stmt = conn
            .prepare_cached("SELECT name, value FROM counters")
            .sql("reading counters")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .sql("reading counters")?;
        let mut s = StoreStats::default();
        for row in rows {
            let (name, v) = row.sql("reading counters")?;
            let v = v.max(0) as u64;
            match name.as_str() {
                "entries" => s.entries = v,
                "bytes" => s.bytes = v,
                "hits" => s.hits = v,
                "misses" => s.misses = v,
                "bytes_saved" => s.bytes_saved = v,
                "ms_saved" => s.ms_saved = v,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Up to `limit` entries with names after `after`, by name.
    pub(crate) fn list_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> larder_core::Result<Vec<EntryMeta>> {
        let guard = self.reader()?;
        let Some(conn) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, size, created_ms, last_access_ms, hits, cost_ms FROM entries
                 WHERE name > ?1 AND name NOT LIKE '%/%' ORDER BY name LIMIT ?2",
            )
            .sql("listing entries")?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], |r| {
                let u = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(EntryMeta {
                    name: r.get(0)?,
                    size: u(1)?,
                    created_ms: u(2)?,
                    last_access_ms: u(3)?,
                    hits: u(4)?,
                    cost_ms: u(5)?,
                })
            })
            .sql("listing entries")?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for r in rows {
            out.push(r.sql("listing entries")?);
        }
        Ok(out)
    }

    /// Rebuild the index from the files, in place (other processes keep working).
    pub(crate) fn rebuild(&self) -> larder_core::Result<()> {
        self.flush()?;
        // Lock order, everywhere: the writer connection, then `index.lock`.
        let mut guard = self.writer()?;
        let _lock = lock_file(&self.layout.index_lock, true)
            .map_err(|e| io_store(format!("locking {}", self.layout.index_lock.display()), e))?;
        let tx = writer_of(&mut guard)?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql("rebuilding")?;
        scan_into(&tx, &self.layout, true)?;
        tx.commit().sql("rebuilding")?;
        Ok(())
    }

    /// Check the database file; rebuild it from scratch if it is damaged. Returns whether it
    /// was rebuilt.
    pub(crate) fn check(&self) -> larder_core::Result<bool> {
        let verdict = {
            let mut guard = self.writer()?;
            writer_of(&mut guard)?.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
        };
        match verdict {
            Ok(v) if v == "ok" => Ok(false),
            Ok(v) => {
                tracing::warn!(
                    "larder index {} failed its check ({v}); rebuilding it",
                    self.layout.index.display()
                );
                self.recreate()?;
                Ok(true)
            }
            Err(e) if crate::error::is_corrupt_sqlite(&e) => {
                tracing::warn!(
                    "larder index {} is damaged ({e}); rebuilding it",
                    self.layout.index.display()
                );
                self.recreate()?;
                Ok(true)
            }
            Err(e) => Err(Error::Sqlite {
                context: "checking",
                source: e,
            }
            .into()),
        }
    }

    /// Replace a damaged database file by a new one built from a scan.
    fn recreate(&self) -> larder_core::Result<()> {
        let mut writer = lock(&self.writer);
        let _lock = lock_file(&self.layout.index_lock, true)
            .map_err(|e| io_store(format!("locking {}", self.layout.index_lock.display()), e))?;
        let mut reader = lock(&self.reader);
        // Close our handles on the damaged file before removing it.
        *writer = None;
        *reader = None;
        remove_db_files(&self.layout.index)
            .map_err(|e| io_store(format!("removing {}", self.layout.index.display()), e))?;
        *writer = Some(build_fresh(&self.layout)?);
        Ok(())
    }
}

/// Open the database, creating or rebuilding it if needed.
fn open_ready(layout: &Layout) -> larder_core::Result<Connection> {
    // The common case: a good index, no lock needed.
    let first = open_conn(&layout.index).and_then(|c| schema_version(&c).map(|v| (c, v)));
    match first {
        Ok((c, v)) if v == SCHEMA_VERSION => return Ok(c),
        Ok((_, v)) if v > SCHEMA_VERSION => {
            return Err(Error::NewerSchema {
                found: v,
                supported: SCHEMA_VERSION,
            }
            .into());
        }
        Ok(_) => {}
        Err(e) if e.is_corruption() => {}
        Err(e) => return Err(e.into()),
    }
    // Missing, empty or damaged: one process builds it while the others wait.
    let _lock = lock_file(&layout.index_lock, true)
        .map_err(|e| io_store(format!("locking {}", layout.index_lock.display()), e))?;
    match open_conn(&layout.index).and_then(|c| schema_version(&c).map(|v| (c, v))) {
        Ok((c, v)) if v == SCHEMA_VERSION => Ok(c),
        Ok((_, v)) if v > SCHEMA_VERSION => Err(Error::NewerSchema {
            found: v,
            supported: SCHEMA_VERSION,
        }
        .into()),
        Ok((mut c, _)) => {
            init_and_scan(&mut c, layout)?;
            Ok(c)
        }
        Err(e) if e.is_corruption() => {
            tracing::warn!(
                "larder index {} is damaged ({e}); rebuilding it",
                layout.index.display()
            );
            remove_db_files(&layout.index)
                .map_err(|e| io_store(format!("removing {}", layout.index.display()), e))?;
            build_fresh(layout)
        }
        Err(e) => Err(e.into()),
    }
}

/// Create a new database file and fill it from a scan (the caller holds `index.lock`).
fn build_fresh(layout: &Layout) -> larder_core::Result<Connection> {
    let mut c = open_conn(&layout.index)?;
    init_and_scan(&mut c, layout)?;
    Ok(c)
}

fn init_and_scan(conn: &mut Connection, layout: &Layout) -> larder_core::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql("creating")?;
    tx.execute_batch(SCHEMA).sql("creating")?;
    scan_into(&tx, layout, false)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .sql("creating")?;
    tx.commit().sql("creating")?;
    Ok(())
}

/// Files directly inside each fan-out directory under `dir`.
fn fanout_files(dir: &Path) -> impl Iterator<Item = fs::DirEntry> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .flat_map(|sub| fs::read_dir(sub.path()).into_iter().flatten())
        .filter_map(|e| e.ok())
}

/// Replace the index's rows by what the files say. Hit counters survive when `keep_hits`.
fn scan_into(tx: &Transaction<'_>, layout: &Layout, keep_hits: bool) -> larder_core::Result<()> {
    let started = std::time::Instant::now();
    tx.execute_batch("DELETE FROM entries; DELETE FROM blobs; UPDATE counters SET value = 0 WHERE name IN ('entries', 'bytes');")
        .sql("rebuilding")?;
    if !keep_hits {
        tx.execute("UPDATE counters SET value = 0", [])
            .sql("rebuilding")?;
    }
    let mut delta = Delta::default();
    {
        let mut add_blob = tx
            .prepare(
                "INSERT INTO blobs (digest, size, refs) VALUES (?1, ?2, 0)
                 ON CONFLICT (digest) DO UPDATE SET size = size + excluded.size",
            )
            .sql("rebuilding")?;
        for f in fanout_files(&layout.blobs) {
            let name = f.file_name();
            let Some(name) = name.to_str() else { continue };
            let hex = name.strip_suffix(ZST_SUFFIX).unwrap_or(name);
            if !is_hex64(hex) {
                continue;
            }
            let Ok(d) = Digest::from_hex(hex) else {
                continue;
            };
            let Ok(m) = f.metadata() else { continue };
            let stored = blocks(m.len());
            add_blob
                .execute(params![&d.as_bytes()[..], stored as i64])
                .sql("rebuilding")?;
            delta.bytes += stored as i64;
        }
    }
    // Standalone blobs: a row each, their files' modification times as access times.
    {
        let mut add_row = tx
            .prepare(
                "INSERT OR IGNORE INTO entries
                 (name, file_size, size, created_ms, last_access_ms, hits, cost_ms, blobs)
                 VALUES (?1, ?2, ?3, ?4, ?4, 0, 0, x'')",
            )
            .sql("rebuilding")?;
        for func in HashFn::ALL.into_iter().filter(|f| *f != HashFn::Blake3) {
            for f in fanout_files(layout.blob_dir(func)) {
                let name = f.file_name();
                let Some(name) = name.to_str() else { continue };
                let hex = name.strip_suffix(ZST_SUFFIX).unwrap_or(name);
                if !is_hex64(hex) {
                    continue;
                }
                let Ok(d) = Digest::from_hex_fn(func, hex) else {
                    continue;
                };
                let Ok(m) = f.metadata() else { continue };
                let added = add_row
                    .execute(params![
                        standalone_name(&d),
                        m.len() as i64,
                        blocks(m.len()) as i64,
                        meta_mtime_ms(&m) as i64,
                    ])
                    .sql("rebuilding")?;
                if added > 0 {
                    delta.entries += 1;
                    delta.bytes += blocks(m.len()) as i64;
                }
            }
        }
    }
    let mut n = 0u64;
    {
        let mut add_entry = tx
            .prepare(
                "INSERT OR REPLACE INTO entries
                 (name, file_size, size, created_ms, last_access_ms, hits, cost_ms, blobs)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
            )
            .sql("rebuilding")?;
        for f in fanout_files(&layout.entries) {
            let name = f.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_hex64(name) {
                continue;
            }
            let path = f.path();
            let Ok(m) = f.metadata() else { continue };
            if m.len() > MAX_ENTRY_BYTES as u64 {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let entry = match Entry::decode(&bytes) {
                Ok(e) => e,
                // A newer larder's entry: not ours to index or remove.
                Err(_) if is_newer_entry(&bytes) => continue,
                Err(e) => {
                    tracing::warn!("removing corrupt entry {}: {e}", path.display());
                    let _ = remove_if_exists(&path);
                    continue;
                }
            };
            let blobs = entry.blob_digests();
            let mut size = blocks(m.len());
            for d in &blobs {
                size += ref_blob(tx, layout, d, &mut delta)?;
            }
            add_entry
                .execute(params![
                    name,
                    m.len() as i64,
                    size as i64,
                    entry.created_ms as i64,
                    meta_mtime_ms(&m) as i64,
                    entry.cost_ms as i64,
                    pack_digests(&blobs),
                ])
                .sql("rebuilding")?;
            delta.entries += 1;
            delta.bytes += blocks(m.len()) as i64;
            n += 1;
        }
    }
    delta.apply(tx)?;
    tracing::info!(
        "rebuilt larder index {} from {n} entries in {:.2?}",
        layout.index.display(),
        started.elapsed()
    );
    Ok(())
}

/// Write one batch of events.
fn apply(conn: &mut Connection, layout: &Layout, batch: &Pending) -> Result<(), Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql("flushing")?;
    let mut delta = Delta {
        hits: batch.hits as i64,
        misses: batch.misses as i64,
        bytes_saved: batch.bytes_saved as i64,
        ms_saved: batch.ms_saved as i64,
        ..Delta::default()
    };
    for op in &batch.ops {
        match op {
            Op::BlobWritten { digest, stored } => {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO blobs (digest, size, refs) VALUES (?1, ?2, 0)
                         ON CONFLICT (digest) DO UPDATE SET size = excluded.size
                         WHERE blobs.size = 0",
                    )
                    .sql("recording a blob")?
                    .execute(params![&digest.as_bytes()[..], *stored as i64])
                    .sql("recording a blob")?;
                if n > 0 {
                    delta.bytes += *stored as i64;
                }
            }
            Op::BlobLost(digest) => {
                if blob_exists(layout, digest) {
                    continue; // written again since
                }
                let row: Option<(i64, i64)> = tx
                    .prepare_cached("SELECT size, refs FROM blobs WHERE digest = ?1")
                    .sql("recording a lost blob")?
                    .query_row(params![&digest.as_bytes()[..]], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .sql("recording a lost blob")?;
                if let Some((size, refs)) = row {
                    delta.bytes -= size;
                    let sql = if refs <= 0 {
                        "DELETE FROM blobs WHERE digest = ?1"
                    } else {
                        "UPDATE blobs SET size = 0 WHERE digest = ?1"
                    };
                    tx.prepare_cached(sql)
                        .sql("recording a lost blob")?
                        .execute(params![&digest.as_bytes()[..]])
                        .sql("recording a lost blob")?;
                }
            }
            Op::Insert(e) => {
                if row_file_ino(layout, &e.name) != Some(e.ino) {
                    continue; // replaced or removed since: its writer or remover records it
                }
                delete_entry_row(&tx, &e.name, &mut delta, |_, _, _| {})?;
                let mut size = blocks(e.file_size);
                for d in &e.blobs {
                    size += ref_blob(&tx, layout, d, &mut delta)?;
                }
                tx.prepare_cached(
                    "INSERT INTO entries
                     (name, file_size, size, created_ms, last_access_ms, hits, cost_ms, blobs)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
                )
                .sql("recording an entry")?
                .execute(params![
                    e.name,
                    e.file_size as i64,
                    size as i64,
                    e.created_ms as i64,
                    e.at_ms as i64,
                    e.cost_ms as i64,
                    pack_digests(&e.blobs),
                ])
                .sql("recording an entry")?;
                delta.entries += 1;
                delta.bytes += blocks(e.file_size) as i64;
            }
            Op::Remove(name) => {
                if row_file_ino(layout, name).is_some() {
                    continue; // written again since
                }
                delete_entry_row(&tx, name, &mut delta, |_, _, _| {})?;
            }
        }
    }
    if !batch.touched.is_empty() {
        let mut stmt = tx
            .prepare_cached(
                "UPDATE entries SET hits = hits + ?1, last_access_ms = MAX(last_access_ms, ?2)
                 WHERE name = ?3",
            )
            .sql("recording accesses")?;
        for (name, t) in &batch.touched {
            stmt.execute(params![t.hits as i64, t.last_ms as i64, name])
                .sql("recording accesses")?;
        }
    }
    delta.apply(&tx)?;
    tx.commit().sql("flushing")
}

#[cfg(test)]
mod journal_tests {
    use super::*;

    /// A journal moved aside by a larder that held no lock on it while it committed (named
    /// `access.log.PID.folding`) is folded only once it was moved long enough ago for any such
    /// fold to be over.
    #[test]
    fn an_unlocked_kind_of_leftover_is_taken_once_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("cache"));
        layout.create_dirs().unwrap();
        let index = Index::open(&layout, true).unwrap();
        // A PID no process has: above the kernel's PID_MAX_LIMIT (4194304).
        let left = layout.root.join("access.log.4294967295.folding");
        fs::write(&left, "h aa 10 2\nc 2 1 100 50\n").unwrap();

        let (taken, p) = index.take_leftovers(UNLOCKED_FOLDING_AGE);
        assert!(
            taken.is_empty() && p.is_empty(),
            "a fold just begun was taken"
        );
        assert!(left.exists());

        let (taken, p) = index.take_leftovers(Duration::ZERO);
        assert_eq!(taken.len(), 1);
        assert_eq!((p.hits, p.misses, p.touched["aa"].hits), (2, 1, 2));
        index.drop_journal(taken);
        assert!(!left.exists());
    }

    #[test]
    fn journal_lines_parse_and_garbage_is_skipped() {
        let p = parse_journal(
            "h aa 10 2\nh bb 5 1\nh aa 30 1\nc 4 1 100 50\nc 1 0 0 0\nh cc x 1\nzz\nc 1 2\n",
        );
        assert_eq!(p.touched.len(), 2);
        assert_eq!((p.touched["aa"].hits, p.touched["aa"].last_ms), (3, 30));
        assert_eq!(
            (p.hits, p.misses, p.bytes_saved, p.ms_saved),
            (5, 1, 100, 50)
        );
    }
}

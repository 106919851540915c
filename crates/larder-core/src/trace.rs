//! Access traces: one line per cache access, for `larder policy simulate`.
//!
//! # Format (v2)
//! Text, one record per line: `time_ms,key,size,cost_ms,op`, where `key` is the first 64 bits
//! of the key's storage name in `0x` hex, `size` the entry's bytes, `cost_ms` its recompute
//! time and `op` one of [`TraceOp`]'s names (`get-hit`, `get-miss`, `put`). A miss carries no
//! size or cost (both 0): the simulator takes them from the `put` that follows. Lines starting
//! with `#` are comments. Version 1 lines have no `op` and are requests whose size and cost are
//! known.
//!
//! A [`TraceLog`] appends whole lines to a file opened with `O_APPEND`, one `write` per line,
//! so any number of processes can record into one trace without interleaving inside a line.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::entry::now_ms;
use crate::error::{Error, Result};
use crate::key::Key;

/// The header a new trace file starts with.
pub const TRACE_HEADER: &str = "# larder trace v2: time_ms,key,size,cost_ms,op";

/// What an access was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceOp {
    /// A lookup that found the entry.
    GetHit,
    /// A lookup that found nothing.
    GetMiss,
    /// An entry was stored.
    Put,
}

impl TraceOp {
    /// The name written in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceOp::GetHit => "get-hit",
            TraceOp::GetMiss => "get-miss",
            TraceOp::Put => "put",
        }
    }
}

impl fmt::Display for TraceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceOp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "get-hit" => Ok(TraceOp::GetHit),
            "get-miss" => Ok(TraceOp::GetMiss),
            "put" => Ok(TraceOp::Put),
            other => Err(Error::invalid(format!(
                "unknown trace op {other:?} (expected get-hit, get-miss or put)"
            ))),
        }
    }
}

/// The 64-bit key a trace records for `key`: the start of its storage name.
pub fn trace_key(key: &Key) -> u64 {
    let name = key.storage_name();
    name.get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// One trace line (with its newline).
pub fn trace_line(time_ms: u64, key: u64, size: u64, cost_ms: u64, op: TraceOp) -> String {
    format!("{time_ms},{key:#018x},{size},{cost_ms},{op}\n")
}

/// An access trace being recorded into a file shared with other processes.
#[derive(Debug)]
pub struct TraceLog {
    path: PathBuf,
    file: File,
    /// Set after the first failed write, so a full disk warns once, not per access.
    failed: AtomicBool,
}

impl TraceLog {
    /// Open (creating) the trace file `path` for appending; a new file gets [`TRACE_HEADER`].
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened.
    pub fn open(path: impl Into<PathBuf>) -> Result<TraceLog> {
        let path = path.into();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening the trace {}", path.display()), e))?;
        let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
        if empty {
            // Two processes may both see the file empty; a second header is only a comment.
            file.write_all(format!("{TRACE_HEADER}\n").as_bytes())
                .map_err(|e| Error::io(format!("writing the trace {}", path.display()), e))?;
        }
        Ok(TraceLog {
            path,
            file,
            failed: AtomicBool::new(false),
        })
    }

    /// The trace file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record an access to `key` now. Never fails: a trace that cannot be written is warned
    /// about once and otherwise ignored (the cache must not break for it).
    pub fn record(&self, op: TraceOp, key: &Key, size: u64, cost_ms: u64) {
        let line = trace_line(now_ms(), trace_key(key), size, cost_ms, op);
        // One write of a whole line on an O_APPEND file: concurrent writers never interleave
        // inside it.
        if let Err(e) = (&self.file).write_all(line.as_bytes())
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "larder: cannot write the access trace {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_many_writers_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.trace");
        let key = Key::new("some/key").unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let log = TraceLog::open(&path).unwrap();
                    for i in 0..200 {
                        log.record(TraceOp::Put, &key, i, 7);
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(records.len(), 800);
        let want_key = format!("{:#018x}", trace_key(&key));
        for r in records {
            let f: Vec<&str> = r.split(',').collect();
            assert_eq!(f.len(), 5, "{r}");
            assert_eq!(f[1], want_key);
            assert_eq!(f[3], "7");
            assert_eq!(f[4].parse::<TraceOp>().unwrap(), TraceOp::Put);
        }
        assert!(text.starts_with(TRACE_HEADER));
    }

    #[test]
    fn ops_round_trip_and_unknown_ops_are_errors() {
        for op in [TraceOp::GetHit, TraceOp::GetMiss, TraceOp::Put] {
            assert_eq!(op.as_str().parse::<TraceOp>().unwrap(), op);
        }
        assert!("delete".parse::<TraceOp>().is_err());
    }
}

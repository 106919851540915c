//! Trimming: enforce the byte and entry budgets and the free-disk head room.
//!
//! One process trims at a time (`trim.lock`, a non-blocking `flock`; others skip). Victims come
//! from the index in LRU order, a batch at a time, so a trim costs time in proportion to what it
//! evicts; with an eviction policy configured, the policy ranks a snapshot of every entry
//! instead (and native LRU takes over if it fails or falls short). Each batch is one
//! transaction. A blob is removed when its last entry goes, unless it was touched within the
//! last minute (a concurrent put may have just deduplicated onto it). Standalone (SHA-256)
//! blobs are victims like entries (their rows are in the same table, see [`crate::index`]);
//! the orphan sweep never sees them.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::Duration;

use larder_core::entry::now_ms;
use larder_core::error::IoResultExt;
use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, validate_victims};
use larder_core::store::ProgressFn;
use larder_core::{Digest, Result, StoreStats, TrimOptions, TrimReport};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::core::{Layout, blocks, meta_mtime_ms, mtime_ms, remove_if_exists, standalone_digest};
use crate::error::SqlResultExt;
use crate::index::{Delta, Index, delete_entry_row, lock_file, unpack_digests};
use crate::writer::remove_blob;

/// Blobs whose last entry goes are kept if modified this recently (see the module docs).
pub(crate) const BLOB_GRACE: Duration = Duration::from_secs(60);
/// Blobs no entry ever referenced, and files left in `tmp/`, are removed once this old.
pub(crate) const ORPHAN_AGE: Duration = Duration::from_secs(3600);
/// Victims per transaction.
const BATCH: usize = 512;

/// An entry chosen for eviction.
#[derive(Debug)]
struct Victim {
    name: String,
    file_size: u64,
    blobs: Vec<u8>,
}

struct Trim<'a> {
    layout: &'a Layout,
    index: &'a Index,
    dry_run: bool,
    need_bytes: u64,
    need_entries: u64,
    freed_bytes: u64,
    /// Bytes of blobs released but kept for the grace window: counted towards the goal (a
    /// later trim removes them), so that a cache filled within the last minute is not emptied
    /// of entries to make up for blobs it may not remove yet.
    deferred_bytes: u64,
    evicted: u64,
    /// Blobs modified after this (ms since the epoch) are kept.
    blob_cutoff_ms: u64,
    /// Dry runs: blob reference counts as they would be, and which names are already gone.
    sim_refs: HashMap<Digest, (i64, u64)>,
    sim_gone: HashSet<String>,
    /// Dry runs: the names that would go, in order.
    sim_victims: Vec<String>,
    progress: Option<ProgressFn>,
    estimate: u64,
}

/// Run a trim (blocking).
pub(crate) fn run(
    layout: &Layout,
    index: &Index,
    policy: Option<&dyn EvictionPolicy>,
    opts: &TrimOptions,
    progress: Option<ProgressFn>,
) -> Result<TrimReport> {
    let lock = lock_file(&layout.trim_lock, opts.wait_for_lock)
        .ctx(|| format!("locking {}", layout.trim_lock.display()))?;
    let Some(_lock) = lock else {
        // The figures include what is queued or journaled, as `stats` does.
        index.flush()?;
        let s = index.stats()?;
        return Ok(TrimReport {
            remaining_entries: s.entries,
            remaining_bytes: s.bytes,
            skipped_locked: true,
            dry_run: opts.dry_run,
            ..TrimReport::default()
        });
    };
    index.flush()?;
    // The one place a full check of the database is affordable: a trim reads much of it anyway.
    index.check()?;
    let start = now_ms();
    if !opts.dry_run {
        sweep_tmp(layout, start.saturating_sub(ORPHAN_AGE.as_millis() as u64));
    }
    let before = index.stats()?;
    let released = if opts.max_bytes.is_some() {
        released_bytes(index)?
    } else {
        0
    };
    let (need_bytes, need_entries) = goals(layout, opts, &before, released)?;
    let mut t = Trim {
        layout,
        index,
        dry_run: opts.dry_run,
        need_bytes,
        need_entries,
        freed_bytes: 0,
        deferred_bytes: 0,
        evicted: 0,
        blob_cutoff_ms: start.saturating_sub(BLOB_GRACE.as_millis() as u64),
        sim_refs: HashMap::new(),
        sim_gone: HashSet::new(),
        sim_victims: Vec::new(),
        progress,
        estimate: estimate(need_bytes, need_entries, &before),
    };
    t.sweep_orphans(start.saturating_sub(ORPHAN_AGE.as_millis() as u64))?;
    if !t.met()
        && let Some(policy) = policy
        && let Err(e) = t.by_policy(policy, start)
    {
        tracing::warn!(
            "larder: eviction policy {} failed ({e}); trimming in LRU order instead",
            policy.name()
        );
    }
    if !t.met() {
        t.by_lru()?;
    }
    if let Some(p) = &t.progress {
        p(t.evicted, t.evicted);
    }
    let (remaining_entries, remaining_bytes) = if opts.dry_run {
        (
            before.entries.saturating_sub(t.evicted),
            before.bytes.saturating_sub(t.freed_bytes),
        )
    } else {
        let s = index.stats()?;
        (s.entries, s.bytes)
    };
    Ok(TrimReport {
        evicted_entries: t.evicted,
        evicted_bytes: t.freed_bytes,
        remaining_entries,
        remaining_bytes,
        skipped_locked: false,
        dry_run: opts.dry_run,
        victims: t.sim_victims,
    })
}

/// Bytes and entries to free.
///
/// `released` bytes belong to blobs no entry references any more: they are on their way out (a
/// later trim removes them once out of their grace window or orphan age), so the size budget
/// does not count them; otherwise every trim until they go would evict live entries to make
/// up for bytes already released. They still occupy the disk, so the head room counts them.
fn goals(layout: &Layout, opts: &TrimOptions, s: &StoreStats, released: u64) -> Result<(u64, u64)> {
    let mut bytes = opts
        .max_bytes
        .map_or(0, |m| s.bytes.saturating_sub(released).saturating_sub(m));
    let entries = opts.max_entries.map_or(0, |m| s.entries.saturating_sub(m));
    if let Some(min_free) = opts.min_free_bytes {
        let free = crate::core::free_bytes(&layout.root)
            .ctx(|| format!("reading free space of {}", layout.root.display()))?;
        if free < min_free {
            let target = opts.max_free_bytes.unwrap_or(min_free).max(min_free);
            bytes = bytes.max(target - free);
        }
    }
    Ok((bytes, entries))
}

/// Bytes of blobs that no entry references.
fn released_bytes(index: &Index) -> Result<u64> {
    index.with_writer(|conn| {
        let n: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE refs <= 0",
                [],
                |r| r.get(0),
            )
            .sql("summing released blobs")?;
        Ok(n.max(0) as u64)
    })
}

/// How many victims the goals will take, roughly (for progress reports).
fn estimate(need_bytes: u64, need_entries: u64, s: &StoreStats) -> u64 {
    let avg = s.bytes.checked_div(s.entries).unwrap_or(1).max(1);
    need_entries.max(need_bytes.div_ceil(avg)).min(s.entries)
}

/// Remove files in `tmp/` older than `cutoff_ms`: what crashed writers left behind.
fn sweep_tmp(layout: &Layout, cutoff_ms: u64) {
    let Ok(dir) = fs::read_dir(&layout.tmp) else {
        return;
    };
    for e in dir.flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && meta_mtime_ms(&m) < cutoff_ms
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Trim<'_> {
    fn met(&self) -> bool {
        self.freed_bytes + self.deferred_bytes >= self.need_bytes
            && self.evicted >= self.need_entries
    }

    fn report_progress(&self) {
        if let Some(p) = &self.progress {
            p(self.evicted, self.estimate.max(self.evicted));
        }
    }

    /// Whether every stored form of blob `d` was last modified before `cutoff_ms`.
    fn blob_older_than(&self, d: &Digest, cutoff_ms: u64) -> bool {
        [false, true]
            .iter()
            .all(|&c| match mtime_ms(&self.layout.blob_path(d, c)) {
                Ok(Some(m)) => m < cutoff_ms,
                Ok(None) => true,
                Err(_) => false,
            })
    }

    /// Remove blobs that no entry references and that are older than `cutoff_ms`.
    fn sweep_orphans(&mut self, cutoff_ms: u64) -> Result<()> {
        let orphans: Vec<(Digest, u64)> = self.index.with_writer(|conn| {
            let mut stmt = conn
                .prepare("SELECT digest, size FROM blobs WHERE refs <= 0")
                .sql("finding unreferenced blobs")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .sql("finding unreferenced blobs")?;
            let mut out = Vec::new();
            for r in rows {
                let (d, size) = r.sql("finding unreferenced blobs")?;
                if let Ok(d) = <[u8; 32]>::try_from(d.as_slice()) {
                    out.push((Digest::blake3(d), size));
                }
            }
            Ok::<_, larder_core::Error>(out)
        })?;
        let old: Vec<(Digest, u64)> = orphans
            .into_iter()
            .filter(|(d, _)| self.blob_older_than(d, cutoff_ms))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            self.freed_bytes += old.iter().map(|(_, s)| s).sum::<u64>();
            return Ok(());
        }
        for chunk in old.chunks(BATCH) {
            let freed = self.index.with_writer(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .sql("removing unreferenced blobs")?;
                let mut delta = Delta::default();
                let mut freed = 0;
                for (d, _) in chunk {
                    freed += release_blob(&tx, self.layout, d, &mut delta)?;
                }
                delta.apply(&tx)?;
                tx.commit().sql("removing unreferenced blobs")?;
                Ok::<_, larder_core::Error>(freed)
            })?;
            self.freed_bytes += freed;
        }
        Ok(())
    }

    /// Evict in LRU order, a batch at a time, until the goals are met or nothing is left.
    fn by_lru(&mut self) -> Result<()> {
        let mut after: Option<(i64, String)> = None;
        while !self.met() {
            let batch: Vec<Victim> = self.index.with_writer(|conn| {
                // Real trims delete each batch before reading the next, so they always read the
                // head of the LRU order; dry runs page through it.
                let (last_ms, last_name) = after.clone().unwrap_or((i64::MIN, String::new()));
                let sql = "SELECT name, file_size, blobs, last_access_ms FROM entries
                           WHERE (last_access_ms, name) > (?1, ?2)
                           ORDER BY last_access_ms, name LIMIT ?3";
                let mut stmt = conn.prepare_cached(sql).sql("choosing victims")?;
                let rows = stmt
                    .query_map(params![last_ms, last_name, BATCH as i64], |r| {
                        Ok((
                            Victim {
                                name: r.get(0)?,
                                file_size: r.get::<_, i64>(1)?.max(0) as u64,
                                blobs: r.get(2)?,
                            },
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .sql("choosing victims")?;
                let mut out = Vec::new();
                for r in rows {
                    let (v, ms) = r.sql("choosing victims")?;
                    if self.dry_run {
                        after = Some((ms, v.name.clone()));
                    }
                    out.push(v);
                }
                Ok::<_, larder_core::Error>(out)
            })?;
            if batch.is_empty() {
                break;
            }
            self.evict(&batch)?;
        }
        Ok(())
    }

    /// Evict the entries an eviction policy picks from a snapshot of the whole index.
    fn by_policy(&mut self, policy: &dyn EvictionPolicy, now: u64) -> Result<()> {
        let (cands, victims) = self.index.with_writer(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT rowid, name, file_size, blobs, size, created_ms, last_access_ms,
                     hits, cost_ms FROM entries",
                )
                .sql("reading entries")?;
            let rows = stmt
                .query_map([], |r| {
                    let u = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok((
                        u(0)?,
                        Victim {
                            name: r.get(1)?,
                            file_size: u(2)?,
                            blobs: r.get(3)?,
                        },
                        [u(4)?, u(5)?, u(6)?, u(7)?, u(8)?],
                    ))
                })
                .sql("reading entries")?;
            let mut c = Candidates::default();
            let mut victims = Vec::new();
            for r in rows {
                let (id, v, [size, created, last, hits, cost]) = r.sql("reading entries")?;
                c.push(id, size, created, last, hits, cost);
                victims.push(Some(v));
            }
            Ok::<_, larder_core::Error>((c, victims))
        })?;
        let mut victims = victims;
        let goal = EvictionGoal {
            bytes: self
                .need_bytes
                .saturating_sub(self.freed_bytes + self.deferred_bytes),
            entries: self.need_entries.saturating_sub(self.evicted),
        };
        let order = policy.select_victims(&cands, goal, now)?;
        validate_victims(policy.name(), &order, cands.len())?;
        drop(cands);
        let mut batch = Vec::with_capacity(BATCH);
        for i in order {
            if self.met() {
                break;
            }
            if let Some(v) = victims.get_mut(i).and_then(Option::take) {
                batch.push(v);
            }
            if batch.len() == BATCH {
                self.evict(&batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.evict(&batch)?;
        }
        Ok(())
    }

    /// Evict `victims` in order (stopping once the goals are met), in one transaction.
    fn evict(&mut self, victims: &[Victim]) -> Result<()> {
        if self.dry_run {
            for v in victims {
                if self.met() {
                    break;
                }
                self.simulate(v)?;
            }
            self.report_progress();
            return Ok(());
        }
        let layout = self.layout;
        let cutoff = self.blob_cutoff_ms;
        let (mut evicted, mut freed, mut deferred) =
            (self.evicted, self.freed_bytes, self.deferred_bytes);
        let (need_entries, need_bytes) = (self.need_entries, self.need_bytes);
        let this = &*self;
        this.index.with_writer(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .sql("evicting")?;
            let mut delta = Delta::default();
            for v in victims {
                if freed + deferred >= need_bytes && evicted >= need_entries {
                    break;
                }
                match standalone_digest(&v.name) {
                    // A standalone blob's row stands for its file (see crate::index).
                    Some(d) => {
                        remove_blob(layout, &d)?;
                    }
                    None => {
                        let path = layout.entry_path(&v.name);
                        remove_if_exists(&path).ctx(|| format!("removing {}", path.display()))?;
                    }
                }
                let mut released = Vec::new();
                let row = delete_entry_row(&tx, &v.name, &mut delta, |d, refs, size| {
                    if refs <= 0 {
                        released.push((d, size));
                    }
                })?;
                let Some(file_size) = row else {
                    continue; // another process removed it meanwhile
                };
                evicted += 1;
                freed += blocks(file_size);
                for (d, size) in released {
                    if this.blob_older_than(&d, cutoff) {
                        freed += release_blob(&tx, layout, &d, &mut delta)?;
                    } else {
                        deferred += size;
                    }
                }
            }
            delta.apply(&tx)?;
            tx.commit().sql("evicting")?;
            Ok::<_, larder_core::Error>(())
        })?;
        self.evicted = evicted;
        self.freed_bytes = freed;
        self.deferred_bytes = deferred;
        self.report_progress();
        Ok(())
    }

    /// Count what evicting `v` would free, without changing anything.
    fn simulate(&mut self, v: &Victim) -> Result<()> {
        if !self.sim_gone.insert(v.name.clone()) {
            return Ok(()); // already counted (by the policy, before LRU took over)
        }
        self.evicted += 1;
        self.freed_bytes += blocks(v.file_size);
        self.sim_victims.push(v.name.clone());
        for d in unpack_digests(&v.blobs) {
            let known = self.sim_refs.get(&d).copied();
            let (refs, size) = match known {
                Some(x) => x,
                None => self.index.with_writer(|conn| {
                    let row = conn
                        .prepare_cached("SELECT refs, size FROM blobs WHERE digest = ?1")
                        .sql("reading a blob")?
                        .query_row(params![&d.as_bytes()[..]], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                        })
                        .optional()
                        .sql("reading a blob")?;
                    Ok(row.unwrap_or((0, 0)))
                })?,
            };
            let refs = refs - 1;
            self.sim_refs.insert(d, (refs, size));
            if refs == 0 {
                if self.blob_older_than(&d, self.blob_cutoff_ms) {
                    self.freed_bytes += size;
                } else {
                    self.deferred_bytes += size;
                }
            }
        }
        Ok(())
    }
}

/// Remove an unreferenced blob's files and row; returns the bytes freed.
fn release_blob(
    tx: &Transaction<'_>,
    layout: &Layout,
    d: &Digest,
    delta: &mut Delta,
) -> Result<u64> {
    let size: Option<i64> = tx
        .prepare_cached("DELETE FROM blobs WHERE digest = ?1 AND refs <= 0 RETURNING size")
        .sql("removing a blob")?
        .query_row(params![&d.as_bytes()[..]], |r| r.get(0))
        .optional()
        .sql("removing a blob")?;
    let Some(size) = size else {
        return Ok(0); // referenced again meanwhile
    };
    remove_blob(layout, d)?;
    delta.bytes -= size;
    Ok(size.max(0) as u64)
}

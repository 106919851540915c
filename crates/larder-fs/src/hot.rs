//! Decoded small entries kept in memory, each tied to the identity of the entry file it was
//! read from.
//!
//! A long-lived process (the server, a worker) reads the same few entries over and over. For
//! those, a lookup is one `stat` of the entry file: when the file is still the one decoded and
//! verified before (same device, inode, length, modification and change times), the entry is
//! taken from memory instead of opening, reading, decoding and re-hashing the file. Entry files
//! are never changed in place (a new version is a new file renamed over the old one, so a new
//! inode), and any write to a file changes its change time, so a replaced, rewritten or removed
//! file never matches. What is served from memory was verified when it was read: the bytes
//! returned are exactly those the digests name.
//!
//! Within `recheck` of the last check even the `stat` is skipped: a change made by another
//! process (a trim, an overwrite) is seen at most that late. Until then the entry served is
//! the one the key had a moment before, verified, which is what a reader racing that change
//! could have got anyway. Changes made through the same store are seen at once.
//!
//! Slots are found by the key itself, and each keeps its entry file's name: a lookup within
//! `recheck` neither derives the file name from the key (a BLAKE3 hash for most keys) nor
//! builds its path.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use larder_core::Entry;

/// Entry files larger than this are not kept (a large inline output is rare and read once).
pub(crate) const MAX_HOT_ENTRY_BYTES: u64 = 64 * 1024;

/// Bytes counted per cached entry on top of its file's length (map slot, key, decoded form).
const OVERHEAD_BYTES: u64 = 256;

/// Which file an entry was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The file's change time.
    pub(crate) fn ctime(&self) -> std::time::SystemTime {
        let (secs, nsec) = self.ctime;
        let since = Duration::new(secs.max(0) as u64, nsec.clamp(0, 999_999_999) as u32);
        std::time::UNIX_EPOCH + since
    }

    /// Whether `m` describes the same file (device and inode), whatever its times.
    pub(crate) fn same_file(&self, m: &Metadata) -> bool {
        self.dev == m.dev() && self.ino == m.ino()
    }

    /// An identity made up for a test.
    #[cfg(test)]
    pub(crate) fn for_test(ino: u64, len: u64) -> FileId {
        FileId {
            dev: 1,
            ino,
            len,
            mtime: (5, 6),
            ctime: (7, 8),
        }
    }

    /// The same file after a change (its change time moved).
    #[cfg(test)]
    pub(crate) fn bump_ctime(&mut self) {
        self.ctime.1 += 1;
    }
}

#[derive(Debug)]
struct Slot {
    /// The entry file's name (the key's storage name).
    name: Arc<str>,
    id: FileId,
    entry: Entry,
    cost: u64,
    /// When the file was last found to be `id`.
    checked: Instant,
}

#[derive(Debug, Default)]
struct Map {
    slots: HashMap<String, Slot>,
    bytes: u64,
}

impl Map {
    /// Drop the slot of `key`, if any, and its bytes.
    fn take(&mut self, key: &str) {
        if let Some(old) = self.slots.remove(key) {
            self.bytes -= old.cost;
        }
    }
}

/// What [`HotEntries::recent`] knows of a key without looking at its file.
// Returned by value once per lookup and never stored: boxing the entry would only add an
// allocation to every in-memory hit.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Recent {
    /// Checked within the recheck interval: serve it (its entry file's name comes along).
    Fresh(Entry, Arc<str>),
    /// Held, but its file must be checked (one `stat`) before it is served.
    Stale,
    /// Not held: read the file (no `stat` first, it would be wasted).
    Absent,
}

/// The cache: key → (entry file name and identity, decoded entry), within a byte budget.
#[derive(Debug)]
pub(crate) struct HotEntries {
    budget: u64,
    recheck: Duration,
    map: Mutex<Map>,
}

impl HotEntries {
    /// A cache of at most `budget` bytes whose slots are trusted for `recheck` after their
    /// file was last checked; `None` when the budget is 0 (caching off).
    pub(crate) fn new(budget: u64, recheck: Duration) -> Option<HotEntries> {
        (budget > 0).then(|| HotEntries {
            budget,
            recheck,
            map: Mutex::new(Map::default()),
        })
    }

    /// The entry of `key` if its file was checked less than `recheck` ago.
    pub(crate) fn recent(&self, key: &str) -> Recent {
        let map = self.lock();
        match map.slots.get(key) {
            None => Recent::Absent,
            Some(slot) if !self.recheck.is_zero() && slot.checked.elapsed() < self.recheck => {
                Recent::Fresh(slot.entry.clone(), Arc::clone(&slot.name))
            }
            Some(_) => Recent::Stale,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `key` if its file is still `id`; a stale slot is dropped.
    pub(crate) fn get(&self, key: &str, id: FileId) -> Option<Entry> {
        let mut map = self.lock();
        match map.slots.get_mut(key) {
            Some(slot) if slot.id == id => {
                slot.checked = Instant::now();
                return Some(slot.entry.clone());
            }
            Some(_) => map.take(key),
            None => {}
        }
        None
    }

    /// Keep `entry` of `key`, decoded from file `id` named `name` (small entry files only).
    pub(crate) fn insert(&self, key: &str, name: &str, id: FileId, entry: &Entry) {
        if id.len > MAX_HOT_ENTRY_BYTES {
            return;
        }
        let cost = id.len + OVERHEAD_BYTES + (key.len() + name.len()) as u64;
        let mut map = self.lock();
        map.take(key);
        // Over budget: drop arbitrary slots (the map's own order, effectively random) until a
        // quarter of the budget is free, so this runs once per many inserts, not every time.
        if map.bytes + cost > self.budget {
            let target = self.budget - self.budget / 4;
            let mut freed = 0;
            let over = (map.bytes + cost).saturating_sub(target);
            let drop: Vec<String> = map
                .slots
                .iter()
                .take_while(|(_, s)| {
                    let go = freed < over;
                    freed += s.cost;
                    go
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in drop {
                map.take(&k);
            }
        }
        if map.bytes + cost <= self.budget {
            map.bytes += cost;
            map.slots.insert(
                key.to_owned(),
                Slot {
                    name: Arc::from(name),
                    id,
                    entry: entry.clone(),
                    cost,
                    checked: Instant::now(),
                },
            );
        }
    }

    /// Forget every entry (after a trim removed some).
    pub(crate) fn clear(&self) {
        let mut map = self.lock();
        map.slots.clear();
        map.bytes = 0;
    }

    /// Forget `key` (its entry was removed or replaced).
    pub(crate) fn remove(&self, key: &str) {
        self.lock().take(key);
    }

    #[cfg(test)]
    fn len_and_bytes(&self) -> (usize, u64) {
        let map = self.lock();
        (map.slots.len(), map.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId {
            dev: 1,
            ino,
            len: 1000,
            mtime: (5, 6),
            ctime: (7, 8),
        }
    }

    #[test]
    fn a_changed_file_identity_is_a_miss_and_drops_the_slot() {
        let hot = HotEntries::new(1 << 20, Duration::ZERO).unwrap();
        let e = Entry::new("k", "test");
        hot.insert("k", "n", id(1), &e);
        assert_eq!(hot.get("k", id(1)), Some(e.clone()));
        let mut changed = id(1);
        changed.ctime.1 += 1;
        assert_eq!(hot.get("k", changed), None);
        assert_eq!(hot.len_and_bytes(), (0, 0));
        assert_eq!(hot.get("k", id(1)), None, "the stale slot is gone");
    }

    #[test]
    fn the_budget_holds_and_large_files_are_not_kept() {
        let per = 1000 + OVERHEAD_BYTES + 4;
        let hot = HotEntries::new(per * 10, Duration::ZERO).unwrap();
        let e = Entry::new("k", "test");
        for i in 0..100 {
            hot.insert(&format!("{i:03}"), "n", id(i), &e);
            let (_, bytes) = hot.len_and_bytes();
            assert!(bytes <= per * 10, "{bytes}");
        }
        let (n, bytes) = hot.len_and_bytes();
        assert!(n >= 7 && bytes == n as u64 * per, "{n} {bytes}");
        let mut big = id(1000);
        big.len = MAX_HOT_ENTRY_BYTES + 1;
        hot.insert("big", "n", big, &e);
        assert_eq!(hot.get("big", big), None);
        hot.remove("099");
        assert!(HotEntries::new(0, Duration::ZERO).is_none());
    }

    #[test]
    fn a_slot_checked_recently_is_served_without_a_check() {
        let hot = HotEntries::new(1 << 20, Duration::from_secs(3600)).unwrap();
        let e = Entry::new("k", "test");
        assert!(matches!(hot.recent("k"), Recent::Absent));
        hot.insert("k", "n", id(1), &e);
        assert!(matches!(hot.recent("k"), Recent::Fresh(got, name) if got == e && &*name == "n"));
        let never = HotEntries::new(1 << 20, Duration::ZERO).unwrap();
        never.insert("k", "n", id(1), &Entry::new("k", "test"));
        assert!(
            matches!(never.recent("k"), Recent::Stale),
            "held, but always checked"
        );
    }
}

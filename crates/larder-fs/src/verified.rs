//! The blobs this process has verified, each with the identity of its file when it was
//! verified: the record that lets a read skip the hash.
//!
//! A blob is recorded after its bytes were hashed and matched its digest: when this store
//! wrote it (hashed on the way in), read it whole, or scrubbed it. The identity is the file's
//! device, inode, length, modification and change times ([`FileId`]), read from the open
//! descriptor *before* the bytes were read, so a write that lands during or after the
//! verification moves the change time past the recorded one. A later read whose open file
//! still has exactly that identity is the same file, not written since through the file
//! system (every write, truncation, `chmod`, `utimensat` or rename moves its change time, which
//! no process can set back short of setting the clock back), and its bytes are sent unhashed.
//!
//! What that does not see: bytes changed underneath the file system (a failing disk or
//! controller, a write to the block device, a bit flip in the page cache). The scrub
//! re-verifies every blob and removes the ones that fail, and clients verify what they receive
//! (larder-http BLAKE3, Bazel SHA-256), so such damage is found there rather than on every
//! read. Where change times come from a coarse clock, a write in the same tick as the change
//! before the identity was read would keep it: such identities are not recorded (see
//! [`Verified::record`]).
//!
//! The record is bounded (a count of blobs) and lives in memory only: after a restart nothing
//! is trusted until it has been verified once (by a read or the scrub). Persisting it would
//! have to trust a file on the same disk and a clock that may have been set back since, to
//! save one hash per blob after a restart.

use std::collections::HashMap;
use std::fs::{Metadata, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use larder_core::Digest;

use crate::core::Layout;
use crate::hot::FileId;
use crate::writer::TmpFile;

/// The longest tick of the kernel's coarse clock that file times come from where they are not
/// fine-grained (a jiffy: 10 ms at HZ=100), with room to spare.
const COARSE_TICK: Duration = Duration::from_millis(50);

/// A file's identity, and when it was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) id: FileId,
    pub(crate) at: SystemTime,
}

impl Seen {
    /// The identity in `m`, read now.
    pub(crate) fn of(m: &Metadata) -> Seen {
        Seen {
            id: FileId::of(m),
            at: SystemTime::now(),
        }
    }
}

/// Digest → identity of the file it was verified in, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct Verified {
    cap: usize,
    map: Mutex<HashMap<Digest, FileId>>,
    /// Where the probe of [`fine_grained_ctime`] makes its file.
    layout: Layout,
    /// Whether a change made right after a `stat` gets a later change time there.
    fine_ctime: OnceLock<bool>,
}

impl Verified {
    /// A record of at most `cap` blobs of the store in `layout`; `None` when `cap` is 0
    /// (every read verifies).
    pub(crate) fn new(cap: usize, layout: &Layout) -> Option<Verified> {
        (cap > 0).then(|| Verified {
            cap,
            map: Mutex::new(HashMap::new()),
            layout: layout.clone(),
            fine_ctime: OnceLock::new(),
        })
    }

    /// Whether an identity read at `seen.at` tells every later change apart: the file's change
    /// time must be a whole coarse tick older than that, or the file system's change times
    /// fine-grained (Linux 6.13+ on ext4, xfs, btrfs, tmpfs: a change after a `stat` always
    /// gets a later time). Otherwise a write in the same tick as the last change before the
    /// `stat` would keep the identity, and is not worth the risk to save one hash.
    fn settled(&self, seen: &Seen) -> bool {
        let old = seen
            .at
            .checked_sub(COARSE_TICK)
            .is_some_and(|t| seen.id.ctime() <= t);
        old || *self
            .fine_ctime
            .get_or_init(|| fine_grained_ctime(&self.layout))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, FileId>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `digest` was verified in a file with identity `id` (the file being read now is
    /// that file, unchanged). A different identity drops the record: the file was replaced or
    /// written since.
    pub(crate) fn trusts(&self, digest: &Digest, id: &FileId) -> bool {
        let mut map = self.lock();
        match map.get(digest) {
            Some(known) if known == id => true,
            Some(_) => {
                map.remove(digest);
                false
            }
            None => false,
        }
    }

    /// Whether `digest` is recorded (with whatever identity).
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.lock().contains_key(digest)
    }

    /// Record that `digest`'s bytes were verified in a file whose identity was `seen` before
    /// they were read (unless that identity could hide a later change: see `settled`).
    pub(crate) fn record(&self, digest: Digest, seen: Seen) {
        if !self.settled(&seen) {
            self.forget(&digest);
            return;
        }
        let id = seen.id;
        let mut map = self.lock();
        if map.len() >= self.cap && !map.contains_key(&digest) {
            // Full: drop arbitrary records (the map's own order) until a quarter is free, so
            // this runs once per many records. A dropped blob is verified on its next read.
            let drop: Vec<Digest> = map.keys().take(self.cap / 4 + 1).copied().collect();
            for d in drop {
                map.remove(&d);
            }
        }
        map.insert(digest, id);
    }

    /// Forget `digest` (its file failed verification or was removed).
    pub(crate) fn forget(&self, digest: &Digest) {
        self.lock().remove(digest);
    }

    /// Blobs recorded.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Whether changes to a file in `layout`'s `tmp/`, each right after a `stat`, get later change
/// times than the `stat` saw, three times out of three (with a coarse clock each change would
/// have to cross a tick boundary within microseconds).
fn fine_grained_ctime(layout: &Layout) -> bool {
    let Ok((path, file)) = layout.create_tmp() else {
        return false;
    };
    let _remove = TmpFile::new(path);
    [0o600, 0o644, 0o600].into_iter().all(|mode| {
        let Ok(before) = file.metadata() else {
            return false;
        };
        if file.set_permissions(Permissions::from_mode(mode)).is_err() {
            return false;
        }
        file.metadata()
            .is_ok_and(|after| FileId::of(&after).ctime() > FileId::of(&before).ctime())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: FileId) -> Seen {
        Seen {
            id,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn only_the_recorded_identity_is_trusted_and_the_record_is_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path().to_owned());
        let v = Verified::new(8, &layout).expect("on");
        let d = Digest::of(b"a");
        let id = FileId::for_test(1, 100);
        assert!(
            !v.trusts(&d, &id),
            "nothing is trusted before it is verified"
        );
        v.record(d, seen(id));
        assert!(v.trusts(&d, &id));
        let mut changed = id;
        changed.bump_ctime();
        assert!(!v.trusts(&d, &changed), "a changed file is not");
        assert!(!v.trusts(&d, &id), "and the old record is gone");
        for i in 0..100u64 {
            v.record(Digest::of(&i.to_le_bytes()), seen(FileId::for_test(i, 10)));
            assert!(v.len() <= 8, "{}", v.len());
        }
        v.record(d, seen(id));
        v.forget(&d);
        assert!(!v.trusts(&d, &id));
        assert!(Verified::new(0, &layout).is_none());
    }

    #[test]
    fn a_fresh_identity_is_recorded_only_where_change_times_are_fine_grained() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path().to_owned());
        layout.create_dirs().expect("dirs");
        let v = Verified::new(8, &layout).expect("on");
        let d = Digest::of(b"fresh");
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").expect("write");
        // Read just after the file changed: within the coarse tick of its change time.
        let fresh = Seen::of(&std::fs::metadata(&path).expect("stat"));
        v.record(d, fresh);
        let fine = fine_grained_ctime(&layout);
        assert_eq!(
            v.trusts(&d, &fresh.id),
            fine,
            "fine-grained change times: {fine}"
        );
        let left = std::fs::read_dir(&layout.tmp).expect("tmp/").count();
        assert_eq!(left, 0, "the probe's file is gone");
        // Read long after its last change: recorded either way.
        let old = Seen {
            id: fresh.id,
            at: fresh.at + Duration::from_secs(1),
        };
        v.record(d, old);
        assert!(v.trusts(&d, &fresh.id));
    }
}

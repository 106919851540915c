//! Looking a key up and restoring what its entry holds: [`Cache::lookup`] (an entry cut down
//! to the files asked for), [`Cache::restore`] (confined to the declared outputs; a poisoned
//! entry is removed) and [`Cache::hit`], both for a task (`larder exec`).

use std::path::Path;

use larder_core::artifacts::{
    Declared, Restore, RestoreOptions, discard_poisoned, restore_outputs, write_content,
};
use larder_core::{Entry, Key, Output, StoreExt};

use crate::cache::Cache;
use crate::error::{Error, Result};

/// What [`Cache::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// No entry under the key.
    Miss,
    /// The entry exists but does not hold this wanted output.
    Absent(String),
    /// The entry, cut down to the wanted outputs, without its captured streams (boxed: an
    /// entry is large beside the other variants).
    Found(Box<Entry>),
}

/// A task's outputs restored by [`Cache::hit`], with what the run it replaces printed.
#[derive(Debug)]
pub struct Hit {
    /// The recorded exit code (0 when none was recorded, clamped to 0..=255).
    pub exit_code: u8,
    /// Outputs restored.
    pub outputs: usize,
    /// How long the task took when it ran, ms.
    pub cost_ms: u64,
    /// The captured stdout, to replay.
    pub stdout: Vec<u8>,
    /// The captured stderr, to replay.
    pub stderr: Vec<u8>,
}

impl Cache<'_> {
    /// Look `key` up and select the `wanted` outputs (all of them when empty). Captured
    /// streams are dropped: the caller restores files only.
    ///
    /// # Errors
    /// [`Error::LookUp`] when the store fails.
    pub async fn lookup(&self, key: &Key, wanted: &[String]) -> Result<Lookup> {
        let Some(mut entry) = self.store.get_entry(key).await.map_err(Error::LookUp)? else {
            return Ok(Lookup::Miss);
        };
        if !wanted.is_empty() {
            match select(&entry, wanted) {
                Ok(outputs) => entry.outputs = outputs,
                Err(absent) => return Ok(Lookup::Absent(absent)),
            }
        }
        entry.stdout = None;
        entry.stderr = None;
        Ok(Lookup::Found(Box::new(entry)))
    }

    /// Place the outputs of `entry` (read under `key`) beneath `root`: only what `declared`
    /// allows, all or nothing, with the cache's placement and symlink rule. An entry naming
    /// anything else is [`Restore::Poisoned`] and has been removed from the store (with a
    /// warning); [`Restore::Missing`] is a blob missing or corrupt. Both are misses, and
    /// nothing was written.
    ///
    /// # Errors
    /// [`Error::Restore`] when writing beneath `root` or reading the store fails.
    pub async fn restore(
        &self,
        key: &Key,
        entry: &Entry,
        root: &Path,
        declared: Declared<'_>,
    ) -> Result<Restore> {
        let blob_bytes: u64 = entry
            .contents()
            .filter(|c| c.inline.is_none())
            .map(|c| c.size)
            .sum();
        let opts = match declared {
            Declared::Entry => RestoreOptions::whole_entry(),
            Declared::Only(names) => RestoreOptions::declared(names),
        }
        .placement(self.placement)
        .allow_external_symlinks(self.allow_external_symlinks);
        let watched = self.watch(blob_bytes, "restoring");
        let restored = restore_outputs(watched.store(), entry, root, &opts).await;
        watched.finish();
        let restored = restored.map_err(Error::Restore)?;
        if let Restore::Poisoned { path, reason } = &restored {
            discard_poisoned(self.store.as_ref(), key, path, reason).await;
        }
        Ok(restored)
    }

    /// A task's hit: look `key` up and, when every blob is there, restore the task's declared
    /// `outputs` beneath `root` and return the captured streams to replay. `Ok(None)` is a
    /// miss: no entry, an entry whose data is gone or corrupt, or a poisoned entry (one naming
    /// anything but `outputs`), which is removed from the store with a warning.
    ///
    /// # Errors
    /// [`Error::LookUp`], [`Error::ReadCaptured`] or [`Error::Restore`] when the store or the
    /// disk fails.
    pub async fn hit(&self, key: &Key, root: &Path, outputs: &[String]) -> Result<Option<Hit>> {
        let Some(entry) = self.store.get_entry(key).await.map_err(Error::LookUp)? else {
            return Ok(None);
        };
        // Captured streams first (into memory: they were capped when captured), so nothing is
        // replayed for an entry that turns out incomplete.
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        for (content, buf) in [(&entry.stdout, &mut stdout), (&entry.stderr, &mut stderr)] {
            if let Some(c) = content
                && !write_content(self.store.as_ref(), c, buf)
                    .await
                    .map_err(Error::ReadCaptured)?
            {
                return Ok(None);
            }
        }
        // Only what the task declared is restored: the entry's own list is untrusted.
        match self
            .restore(key, &entry, root, Declared::Only(outputs))
            .await?
        {
            Restore::Restored => {}
            Restore::Missing | Restore::Poisoned { .. } => return Ok(None),
        }
        Ok(Some(Hit {
            exit_code: entry.exit_code.unwrap_or(0).clamp(0, 255) as u8,
            outputs: entry.outputs.len(),
            cost_ms: entry.cost_ms,
            stdout,
            stderr,
        }))
    }
}

/// The outputs `wanted` names (a directory brings what is below it), or the first name the
/// entry does not hold.
fn select(entry: &Entry, wanted: &[String]) -> Result<Vec<Output>, String> {
    for w in wanted {
        if !entry.outputs.iter().any(|o| &o.path == w) {
            return Err(w.clone());
        }
    }
    Ok(entry
        .outputs
        .iter()
        .filter(|o| {
            wanted.iter().any(|w| {
                o.path == *w
                    || o.path
                        .strip_prefix(w.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        })
        .cloned()
        .collect())
}

//! Storing a task's outputs: [`Cache::collect`] reads them into an entry, [`Cache::put`]
//! stores its blobs, captured streams and the entry (the entry last) now, [`Cache::queue`]
//! through the upload queue; both ask the admission policy first. [`Cache::trim_if_over`]
//! keeps the store within its budget afterwards.

use std::path::Path;

use larder_core::admission::AdmissionCandidate;
use larder_core::artifacts::{
    PendingBlob, collect_outputs, external_symlink, store_bytes, store_outputs,
    store_outputs_concurrently,
};
use larder_core::entry::now_ms;
use larder_core::{Entry, Key, Output, Store, TrimReport};

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::uploads::{Done, Uploads};

/// An entry read from disk, with the blobs to upload before it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The entry (its captured streams are set when it is stored).
    pub entry: Entry,
    /// Outputs too large to inline, uploaded before the entry.
    pub blobs: Vec<PendingBlob>,
}

/// A task's captured stdout and stderr, stored with its entry (inline when small); empty
/// streams are not recorded.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    /// What the task wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Streams {
    /// Their length together.
    fn len(&self) -> u64 {
        (self.stdout.len() + self.stderr.len()) as u64
    }
}

/// What [`Cache::put`] did.
#[derive(Debug)]
pub enum Stored {
    /// Stored.
    Now {
        /// Outputs stored.
        outputs: usize,
        /// Their bytes, captured streams included.
        bytes: u64,
    },
    /// Not stored: the admission policy of this name refused it.
    Refused(String),
}

/// What [`Cache::queue`] did.
#[derive(Debug)]
pub enum Queued {
    /// Queued: the upload runs in the background, and ends as a [`Done`] of the queue.
    Uploading {
        /// Outputs queued.
        outputs: usize,
        /// Their bytes, captured streams included.
        bytes: u64,
        /// Uploads queued earlier that finished meanwhile (while this one waited for room).
        finished: Vec<Done>,
    },
    /// Not queued: the admission policy of this name refused it.
    Refused(String),
}

impl Cache<'_> {
    /// Read the files and directories `names` (relative to `root`) into an entry for `key`
    /// made by `producer`, inlining files up to the inline limit. A name listed twice (or
    /// inside a listed directory and also named) is kept once. Blocking: call it inside
    /// `block_in_place` or on a blocking thread.
    ///
    /// # Errors
    /// [`Error::Collect`]: a name is unsafe, an output does not exist or cannot be read.
    pub fn collect(
        &self,
        root: &Path,
        key: &Key,
        names: &[String],
        producer: &str,
    ) -> Result<Prepared> {
        let mut collected =
            collect_outputs(root, names, self.inline_limit).map_err(Error::Collect)?;
        let mut seen = std::collections::HashSet::new();
        collected.outputs.retain(|o| seen.insert(o.path.clone()));
        let mut entry = Entry::new(key.as_str(), producer);
        entry.outputs = collected.outputs;
        Ok(Prepared {
            entry,
            blobs: collected.blobs,
        })
    }

    /// The first output of `entry` a restore with this cache's settings would refuse: a
    /// symlink leaving the root, unless those are allowed. Such an entry is better not
    /// stored, as every hit would discard it.
    pub fn external_symlink<'e>(&self, entry: &'e Entry) -> Option<&'e Output> {
        if self.allow_external_symlinks {
            return None;
        }
        external_symlink(entry)
    }

    /// The name of the admission policy when it refuses `prepared` with `streams`.
    fn refused_by(&self, prepared: &Prepared, streams: &Streams) -> Option<String> {
        let policy = self.admission.as_ref()?;
        let mut candidate = AdmissionCandidate::of(&prepared.entry);
        candidate.size += streams.len();
        (!policy.admit(candidate, now_ms())).then(|| policy.name().to_owned())
    }

    /// Store `prepared` under `key` with the task's captured `streams`: the blobs the store
    /// lacks, then the entry. [`Stored::Refused`] when the admission policy refuses it.
    ///
    /// # Errors
    /// [`Error::StoreCaptured`] or [`Error::Store`] when the store fails.
    pub async fn put(&self, key: &Key, prepared: Prepared, streams: Streams) -> Result<Stored> {
        if let Some(policy) = self.refused_by(&prepared, &streams) {
            return Ok(Stored::Refused(policy));
        }
        let (outputs, bytes) = summary(&prepared, &streams);
        let Prepared { mut entry, blobs } = prepared;
        store_streams(self.store.as_ref(), &mut entry, streams, self.inline_limit)
            .await
            .map_err(Error::StoreCaptured)?;
        let blob_bytes: u64 = blobs.iter().map(|b| b.size).sum();
        let watched = self.watch(blob_bytes, "storing");
        let stored = store_outputs(watched.store(), key, &entry, &blobs).await;
        watched.finish();
        stored.map_err(Error::Store)?;
        Ok(Stored::Now { outputs, bytes })
    }

    /// Queue the storing of `prepared` under `key` (as [`Cache::put`], with up to
    /// `transfers` blob uploads at a time) on `uploads`, and return at once, unless the queue
    /// is full. The upload's outcome is a [`Done`] from `uploads`; [`Queued::Refused`] when
    /// the admission policy refuses it.
    pub async fn queue(
        &self,
        uploads: &mut Uploads,
        key: Key,
        prepared: Prepared,
        streams: Streams,
        transfers: usize,
    ) -> Queued {
        if let Some(policy) = self.refused_by(&prepared, &streams) {
            return Queued::Refused(policy);
        }
        let (outputs, bytes) = summary(&prepared, &streams);
        let finished = uploads.wait_for_room().await;
        let Prepared { mut entry, blobs } = prepared;
        let (store, inline_limit) = (self.store.clone(), self.inline_limit);
        uploads.spawn(async move {
            let stored = async {
                store_streams(store.as_ref(), &mut entry, streams, inline_limit).await?;
                store_outputs_concurrently(store.as_ref(), &key, &entry, &blobs, transfers).await
            };
            match stored.await {
                Ok(()) => Ok(entry.total_size()),
                Err(e) => Err(format!("cannot store {key} in {store}: {e}")),
            }
        });
        Queued::Uploading {
            outputs,
            bytes,
            finished,
        }
    }

    /// Trim the store when it is over a budget of [`Cache::with_budget`] (or the disk is
    /// below its free-space minimum), in the eviction policy's order. `Ok(None)` when within
    /// budget, without a budget, or for a store that cannot be trimmed; a report with
    /// `skipped_locked` when another process is trimming (this one does not wait).
    ///
    /// # Errors
    /// [`Error::Trim`] when the store's figures cannot be read or the trim fails.
    pub async fn trim_if_over(&self) -> Result<Option<TrimReport>> {
        let budget = &self.budget;
        if !budget.has_budget() || !self.store.capability().trim {
            return Ok(None);
        }
        let stats = self.store.stats().await.map_err(Error::Trim)?;
        let over_size = budget.max_bytes.is_some_and(|m| stats.bytes > m);
        let over_entries = budget.max_entries.is_some_and(|m| stats.entries > m);
        let low_disk = match (budget.min_free_bytes, &self.local_dir) {
            (Some(min), Some(dir)) => fs4::available_space(dir).is_ok_and(|free| free < min),
            _ => false,
        };
        if !(over_size || over_entries || low_disk) {
            return Ok(None);
        }
        let mut opts = budget.clone();
        opts.wait_for_lock = false;
        let report = self.store.trim(&opts, None).await.map_err(Error::Trim)?;
        Ok(Some(report))
    }
}

/// (outputs, bytes) of a task about to be stored, its captured streams included.
fn summary(prepared: &Prepared, streams: &Streams) -> (usize, u64) {
    (
        prepared.entry.outputs.len(),
        prepared.entry.total_size() + streams.len(),
    )
}

/// Store the non-empty captured streams (inline when small) and record them in `entry`.
async fn store_streams(
    store: &dyn Store,
    entry: &mut Entry,
    streams: Streams,
    inline_limit: u64,
) -> larder_core::Result<()> {
    if !streams.stdout.is_empty() {
        entry.stdout = Some(store_bytes(store, streams.stdout, inline_limit).await?);
    }
    if !streams.stderr.is_empty() {
        entry.stderr = Some(store_bytes(store, streams.stderr, inline_limit).await?);
    }
    Ok(())
}

//! Disk safety while serving: budgets kept by a clean-up task, writes refused with 507 when the
//! disk cannot take them (reads go on), and out-of-space errors recognised wherever they occur.
//!
//! The clean-up runs the store's own trim (the configured eviction order) every
//! `cleanup_interval`, and at once when a write finds free space under the head room
//! (`min_free_bytes`). A write whose size is known up front is admitted only if, after such a
//! clean-up, the disk still has room for it plus [`WRITE_MARGIN`]; a write that runs out of
//! space anyway (unknown size, or a race with another writer) fails with 507 and leaves
//! nothing behind, because stores write to temporary files and rename.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use larder_core::{Store, TrimOptions};
use tokio::sync::{Mutex, Notify};

use crate::metrics::Metrics;

/// Room a write must leave on the disk besides its own bytes (the index, temporary files).
pub(crate) const WRITE_MARGIN: u64 = 8 << 20;

/// Free space on the filesystem holding `dir`, if it can be read.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    fs4::available_space(dir).ok()
}

/// Whether `err` (or anything in its source chain) is "no space left on device" or "quota
/// exceeded".
pub(crate) fn is_out_of_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The clean-up: one trim at a time, on a timer or on demand.
#[derive(Debug)]
pub(crate) struct Cleaner {
    store: Arc<dyn Store>,
    dir: std::path::PathBuf,
    budget: TrimOptions,
    metrics: Arc<Metrics>,
    wake: Notify,
    running: Mutex<()>,
}

impl Cleaner {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        dir: &Path,
        budget: &TrimOptions,
        metrics: Arc<Metrics>,
    ) -> Cleaner {
        let mut budget = budget.clone();
        budget.dry_run = false;
        budget.wait_for_lock = false;
        Cleaner {
            store,
            dir: dir.to_owned(),
            budget,
            metrics,
            wake: Notify::new(),
            running: Mutex::new(()),
        }
    }

    /// Whether any budget is configured.
    pub(crate) fn enabled(&self) -> bool {
        self.budget.has_budget() && self.store.capability().trim
    }

    /// Run forever: a clean-up every `interval`, or sooner when woken.
    pub(crate) async fn run(self: Arc<Self>, interval: Duration) {
        if !self.enabled() {
            return;
        }
        loop {
            self.clean().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One clean-up now (or wait for the one running).
    pub(crate) async fn clean(&self) {
        let _guard = self.running.lock().await;
        match self.store.trim(&self.budget, None).await {
            Ok(report) => {
                if report.evicted_entries > 0 {
                    tracing::info!(
                        "clean-up evicted {} entries ({} bytes); {} entries ({} bytes) remain",
                        report.evicted_entries,
                        report.evicted_bytes,
                        report.remaining_entries,
                        report.remaining_bytes
                    );
                }
                self.metrics
                    .evicted(report.evicted_entries, report.evicted_bytes);
            }
            Err(e) => tracing::warn!("clean-up of {} failed: {e}", self.store),
        }
    }

    /// Whether the disk can take a write of `size` bytes (unknown: 0), cleaning up first when
    /// free space is under the head room or too small.
    pub(crate) async fn room_for(&self, size: Option<u64>) -> bool {
        let need = size.unwrap_or(0).saturating_add(WRITE_MARGIN);
        let head_room = self.budget.min_free_bytes.unwrap_or(0);
        let Some(free) = free_space(&self.dir) else {
            return true; // cannot tell: let the write try
        };
        if free >= need.saturating_add(head_room) {
            return true;
        }
        if self.enabled() {
            self.clean().await;
        }
        free_space(&self.dir).is_none_or(|free| free >= need)
    }
}

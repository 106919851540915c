//! The admission seam: whether a new entry is stored at all.
//!
//! Callers that store entries (the CLI on `larder exec`, `larder put` and the worker; the
//! server on every put) ask an [`AdmissionPolicy`] first and simply skip entries it refuses:
//! a refusal is not an error. The WebAssembly policy host implements this trait.

use std::fmt::Debug;

use crate::entry::Entry;

/// What is known about an entry before it is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionCandidate {
    /// Total bytes of the entry's outputs (and captured streams).
    pub size: u64,
    /// How long the task took to run, ms.
    pub cost_ms: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

impl AdmissionCandidate {
    /// The candidate `entry` makes.
    pub fn of(entry: &Entry) -> Self {
        AdmissionCandidate {
            size: entry.total_size(),
            cost_ms: entry.cost_ms,
            created_ms: entry.created_ms,
        }
    }
}

/// Decides whether a new entry is stored.
///
/// # Contract
/// - MUST NOT fail: a policy that cannot decide admits (losing one entry's chance is cheap,
///   refusing everything is not).
/// - SHOULD be cheap: it runs on every store.
pub trait AdmissionPolicy: Send + Sync + Debug {
    /// The policy's name, for logs.
    fn name(&self) -> &str;
    /// Whether to store an entry described by `candidate`, at `now_ms` (ms since the epoch).
    fn admit(&self, candidate: AdmissionCandidate, now_ms: u64) -> bool;
}

//! The eviction seam: which entries a trim removes.
//!
//! Stores evict in native LRU order by default, using their own index (so a trim costs time in
//! proportion to what it evicts). A store configured with an [`EvictionPolicy`] instead hands it
//! a columnar snapshot of its entries ([`Candidates`]) and removes what the policy picks. The
//! WebAssembly policy host implements this trait; so does [`Lru`], the reference policy that
//! tests compare native stores against.

use std::fmt::Debug;

use crate::error::{Error, Result};

/// Entry metadata in columns (one `Vec` per field, same length), the shape that crosses into a
/// WebAssembly guest cheaply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// Store-specific entry ids (opaque to the policy).
    pub ids: Vec<u64>,
    /// Bytes each entry accounts for.
    pub size: Vec<u64>,
    /// Creation time, ms since the epoch.
    pub created_ms: Vec<u64>,
    /// Last access, ms since the epoch.
    pub last_access_ms: Vec<u64>,
    /// Hit counts.
    pub hits: Vec<u64>,
    /// Recompute cost, ms.
    pub cost_ms: Vec<u64>,
}

impl Candidates {
    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Append one candidate.
    pub fn push(
        &mut self,
        id: u64,
        size: u64,
        created_ms: u64,
        last_access_ms: u64,
        hits: u64,
        cost_ms: u64,
    ) {
        self.ids.push(id);
        self.size.push(size);
        self.created_ms.push(created_ms);
        self.last_access_ms.push(last_access_ms);
        self.hits.push(hits);
        self.cost_ms.push(cost_ms);
    }
}

/// How much a trim must free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionGoal {
    /// Free at least this many bytes.
    pub bytes: u64,
    /// Remove at least this many entries.
    pub entries: u64,
}

/// Chooses victims for a trim.
///
/// # Contract
/// - Returns indices into `candidates`, each at most once, in eviction order.
/// - SHOULD return just enough victims to meet `goal`; the store stops once the goal is met
///   and ignores the rest.
/// - The store validates the list ([`validate_victims`]); an invalid list is an error and the
///   store falls back to native LRU.
pub trait EvictionPolicy: Send + Sync + Debug {
    /// The policy's name, for logs and warnings.
    fn name(&self) -> &str;
    /// Pick victims.
    ///
    /// # Errors
    /// Policy failures (a trapped guest, a time-out).
    fn select_victims(
        &self,
        candidates: &Candidates,
        goal: EvictionGoal,
        now_ms: u64,
    ) -> Result<Vec<usize>>;
}

/// Check a victim list: indices in range, no repeats.
///
/// # Errors
/// [`Error::InvalidInput`] naming the policy and the problem.
pub fn validate_victims(policy: &str, victims: &[usize], n: usize) -> Result<()> {
    let mut seen = vec![false; n];
    for &v in victims {
        if v >= n {
            return Err(Error::invalid(format!(
                "eviction policy {policy} chose victim {v} of {n} candidates"
            )));
        }
        if std::mem::replace(&mut seen[v], true) {
            return Err(Error::invalid(format!(
                "eviction policy {policy} chose victim {v} twice"
            )));
        }
    }
    Ok(())
}

/// Least recently used first (ties: oldest created, then smallest id).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lru;

impl EvictionPolicy for Lru {
    fn name(&self) -> &str {
        "lru"
    }

    fn select_victims(
        &self,
        c: &Candidates,
        goal: EvictionGoal,
        _now_ms: u64,
    ) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_unstable_by_key(|&i| (c.last_access_ms[i], c.created_ms[i], c.ids[i]));
        let (mut bytes, mut entries) = (0u64, 0u64);
        let mut out = Vec::new();
        for i in order {
            if bytes >= goal.bytes && entries >= goal.entries {
                break;
            }
            bytes += c.size[i];
            entries += 1;
            out.push(i);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_picks_oldest_until_goal() {
        let mut c = Candidates::default();
        c.push(10, 100, 0, 30, 0, 0);
        c.push(11, 100, 0, 10, 0, 0);
        c.push(12, 100, 0, 20, 0, 0);
        let v = Lru
            .select_victims(
                &c,
                EvictionGoal {
                    bytes: 150,
                    entries: 0,
                },
                0,
            )
            .unwrap();
        assert_eq!(v, vec![1, 2]);
        validate_victims("lru", &v, 3).unwrap();
        assert!(validate_victims("x", &[0, 0], 3).is_err());
        assert!(validate_victims("x", &[3], 3).is_err());
    }
}

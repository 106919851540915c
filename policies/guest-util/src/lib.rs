//! Helpers shared by larder's guest policies: plain Rust, no WIT bindings, so each policy crate
//! generates its own bindings and stays a self-contained example.

/// What a trim must free (the `reclaim-goal` of the WIT contract, without the clock).
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// Free at least this many bytes.
    pub bytes: u64,
    /// Remove at least this many entries.
    pub entries: u64,
}

impl Goal {
    /// Whether `bytes` freed by removing `entries` entries meet the goal.
    pub fn met(&self, bytes: u64, entries: u64) -> bool {
        bytes >= self.bytes && entries >= self.entries
    }
}

/// The victims of a snapshot policy: the entries with the smallest keys, in key order, until
/// `goal` is met (the same stopping rule as larder's native LRU).
///
/// `keyed[i] = (key, index)`; keys need not be unique (the index breaks ties, which makes the
/// order total and the answer deterministic). Instead of sorting all n entries it selects the
/// k smallest (`select_nth_unstable`, O(n)) and sorts only those, doubling k until the goal is
/// met: O(n + k log k) for k victims, and exactly the order a full sort would give.
pub fn smallest_until_goal<K: Ord + Copy>(
    mut keyed: Vec<(K, u32)>,
    sizes: &[u64],
    goal: Goal,
) -> Vec<u32> {
    let n = keyed.len();
    if n == 0 || goal.met(0, 0) {
        return Vec::new();
    }
    let mut k = first_k(n, sizes, goal);
    loop {
        if k < n {
            keyed.select_nth_unstable(k);
        }
        let head = &mut keyed[..k];
        head.sort_unstable();
        if let Some(out) = take_until_goal(head, sizes, goal, k == n) {
            return out;
        }
        k = k.saturating_mul(2).min(n);
    }
}

/// Like [`smallest_until_goal`] for a key made of a `u64` primary part and a tie-breaker that
/// is only computed for entries whose primary parts are equal (`tie(index)`): sorting 16-byte
/// `(primary, index)` pairs instead of wide tuples halves the work when ties are rare
/// (timestamps in ms). The order is exactly that of the key `(primary, tie(i), i)`.
pub fn smallest_until_goal_by<T: Ord>(
    mut keyed: Vec<(u64, u32)>,
    tie: impl Fn(u32) -> T,
    sizes: &[u64],
    goal: Goal,
) -> Vec<u32> {
    let n = keyed.len();
    if n == 0 || goal.met(0, 0) {
        return Vec::new();
    }
    let mut k = first_k(n, sizes, goal);
    loop {
        let mut head_len = k;
        if k < n {
            keyed.select_nth_unstable(k - 1);
            // Entries tied with the last one kept may sit past k: bring them into the head,
            // so the tie-breaker decides between all of them.
            let pivot = keyed[k - 1].0;
            let mut j = k;
            for i in k..n {
                if keyed[i].0 == pivot {
                    keyed.swap(i, j);
                    j += 1;
                }
            }
            head_len = j;
        }
        let head = &mut keyed[..head_len];
        head.sort_unstable();
        let mut start = 0;
        while start < head.len() {
            let mut end = start + 1;
            while end < head.len() && head[end].0 == head[start].0 {
                end += 1;
            }
            if end - start > 1 {
                head[start..end].sort_unstable_by_key(|&(_, i)| (tie(i), i));
            }
            start = end;
        }
        if let Some(out) = take_until_goal(head, sizes, goal, k == n) {
            return out;
        }
        k = k.saturating_mul(2).min(n);
    }
}

/// How many of the `n` smallest keys to select first: what the goal needs at the average size,
/// plus a margin (the sizes of the k smallest keys average out for large k; if they fall
/// short, k doubles).
fn first_k(n: usize, sizes: &[u64], goal: Goal) -> usize {
    let total: u64 = sizes.iter().copied().fold(0u64, u64::saturating_add);
    let avg = (total / n as u64).max(1);
    let guess = (goal.bytes / avg)
        .saturating_add(goal.bytes / avg / 4)
        .max(goal.entries)
        .saturating_add(1024);
    usize::try_from(guess).unwrap_or(n).min(n)
}

/// The indices of the sorted `head`, in order, until `goal` is met; `None` when the head falls
/// short and is not everything (`all`): the caller selects a larger head.
fn take_until_goal<K>(head: &[(K, u32)], sizes: &[u64], goal: Goal, all: bool) -> Option<Vec<u32>> {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut out = Vec::new();
    for &(_, i) in head {
        if goal.met(bytes, entries) {
            return Some(out);
        }
        bytes = bytes.saturating_add(sizes.get(i as usize).copied().unwrap_or(0));
        entries += 1;
        out.push(i);
    }
    (goal.met(bytes, entries) || all).then_some(out)
}

/// Parse `key=value` settings separated by `;`, `,` or newlines (the format every shipped
/// policy uses for its config string). Unknown keys are the caller's to reject.
pub fn settings(config: &str) -> impl Iterator<Item = (&str, &str)> {
    config
        .split([';', ',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (s, ""),
        })
}

/// Parse one numeric setting, naming it in the error.
pub fn number(key: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("setting {key}: {value:?} is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_selection_matches_a_full_sort() {
        let sizes: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 97 + 1).collect();
        let keys: Vec<(u64, u32)> = (0..1000u32).map(|i| ((i as u64 * 31) % 101, i)).collect();
        for bytes in [0, 1, 50, 500, 5000, 100_000] {
            let goal = Goal { bytes, entries: 3 };
            let got = smallest_until_goal(keys.clone(), &sizes, goal);
            let mut all = keys.clone();
            all.sort_unstable();
            let (mut b, mut e) = (0, 0);
            let mut want = Vec::new();
            for (_, i) in all {
                if goal.met(b, e) {
                    break;
                }
                b += sizes[i as usize];
                e += 1;
                want.push(i);
            }
            assert_eq!(got, want, "bytes {bytes}");
            // The same order from a primary key with many ties and a tie-breaker.
            let primary: Vec<(u64, u32)> = keys.iter().map(|&(k, i)| (k / 10, i)).collect();
            let by = smallest_until_goal_by(primary, |i| keys[i as usize].0 % 10, &sizes, goal);
            let mut all: Vec<((u64, u64), u32)> =
                keys.iter().map(|&(k, i)| ((k / 10, k % 10), i)).collect();
            all.sort_unstable();
            let (mut b, mut e) = (0, 0);
            let mut want = Vec::new();
            for (_, i) in all {
                if goal.met(b, e) {
                    break;
                }
                b += sizes[i as usize];
                e += 1;
                want.push(i);
            }
            assert_eq!(by, want, "bytes {bytes} (by)");
        }
    }
}

//! GDSF eviction (GreedyDual-Size-Frequency, Cherkasova 1998): keeps what is expensive to
//! recompute per byte.
//!
//! An entry's priority is `H = L + frequency × (cost + 1 ms) / size`, the lowest goes first,
//! and after each trim the inflation value `L` rises to the highest priority evicted. `L` is
//! what ages entries: one used recently carries a recent (high) `L`, one untouched since long
//! ago carries the `L` of that time. The host passes snapshots, not events, so the policy
//! keeps `L`'s history (one point per trim) and gives each entry the `L` in force at its last
//! access.
//!
//! Frequency is `1 + hits × 2^(−idle / interval)`: the hit count decays by the entry's own
//! pace, `interval` being its mean time between uses so far (`(last access − created) / hits`)
//! and `idle` the time since its last use. An entry still used at its usual pace keeps its
//! count; one that has missed several of its usual uses (in a build cache: its inputs changed,
//! so requests now go to a new key) falls back to frequency 1 within a few intervals. Plain
//! GDSF keeps lifetime counts, and `L` rises only at trims, which are rare once the cache
//! holds the working set: such stale once-popular entries then stayed for a long time and
//! pushed out entries still in use.
//!
//! Value also fades past the cache's reuse horizon `D`, the 90th percentile of the entries'
//! mean reuse intervals (entries with hits only): an entry idle for longer than `D` loses half
//! its value for every further `D`, `value × 2^(−max(0, idle − D) / D)`. This is what ages entries
//! whose value comes from cost and size rather than hits: a small output that took a minute to
//! build keeps a high value per byte for ever, and `L`, raised only by the (cheap, large)
//! entries that trims evict, never catches up with it; when its task's inputs changed, nothing
//! will ask for it again, and the space it holds goes to entries still in use. While the cache is
//! small, entries are evicted before they are idle for that long and the rule does not bite;
//! once it holds the working set, it evicts the dead versions that plain GDSF kept (on the
//! synthetic traces gdsf fell 0.1–0.7% behind LRU there, and is now ahead or equal). The time
//! scale is the cache's own; the one constant is the percentile. No settings.
wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use std::sync::Mutex;

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, settings, smallest_until_goal};

/// (time of a trim, L after it), times increasing, L non-decreasing.
static HISTORY: Mutex<Vec<(u64, f64)>> = Mutex::new(Vec::new());
/// Points kept; older ones are thinned (every other one dropped), which only coarsens aging.
const MAX_HISTORY: usize = 4096;

struct Gdsf;

/// The inflation value in force at time `t`.
fn l_at(history: &[(u64, f64)], t: u64) -> f64 {
    match history.partition_point(|&(time, _)| time <= t) {
        0 => 0.0,
        i => history[i - 1].1,
    }
}

/// `1 + hits × 2^(−idle / interval)` for entry `i`, idle for `idle` ms (see the crate docs).
fn frequency(s: &Snapshot, i: usize, idle: f64) -> f64 {
    let hits = s.hits[i];
    if hits == 0 {
        return 1.0;
    }
    let interval = interval(s, i);
    // All hits at the creation instant (no pace known): count them only until time passes.
    let pace = if interval > 0.0 {
        (-(idle / interval)).exp2()
    } else if idle > 0.0 {
        0.0
    } else {
        1.0
    };
    1.0 + hits as f64 * pace
}

/// Entry `i`'s mean time between uses so far, `(last access − created) / hits` (hits > 0).
fn interval(s: &Snapshot, i: usize) -> f64 {
    s.last_access_ms[i].saturating_sub(s.created_ms[i]) as f64 / s.hits[i] as f64
}

/// The cache's reuse horizon: the 90th percentile of the mean reuse intervals of the entries
/// that have been reused (0 when none has).
fn horizon(s: &Snapshot) -> f64 {
    let mut intervals: Vec<f64> = (0..s.ids.len())
        .filter(|&i| s.hits[i] > 0)
        .map(|i| interval(s, i))
        .filter(|&iv| iv > 0.0)
        .collect();
    if intervals.is_empty() {
        return 0.0;
    }
    let at = (intervals.len() - 1) * 9 / 10;
    *intervals.select_nth_unstable_by(at, f64::total_cmp).1
}

/// `2^(−max(0, idle − d) / d)`: 1 within the horizon `d`, halving for every `d` beyond it.
fn fade(idle: f64, d: f64) -> f64 {
    if d > 0.0 && idle > d {
        (-((idle - d) / d)).exp2()
    } else {
        1.0
    }
}

impl Guest for Gdsf {
    fn init(config: String) -> Result<PolicyInfo, String> {
        if let Some((k, _)) = settings(&config).next() {
            return Err(format!("gdsf: unknown setting {k:?} (gdsf has none)"));
        }
        if let Ok(mut h) = HISTORY.lock() {
            h.clear();
        }
        Ok(PolicyInfo {
            name: "gdsf".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let Some(s) = snapshot else {
            return Victims::Indices(Vec::new());
        };
        let mut history = HISTORY.lock().unwrap_or_else(|p| p.into_inner());
        let d = horizon(&s);
        let priority: Vec<f64> = (0..s.ids.len())
            .map(|i| {
                let idle = goal.now_ms.saturating_sub(s.last_access_ms[i]) as f64;
                let value = frequency(&s, i, idle) * fade(idle, d) * (s.cost_ms[i] as f64 + 1.0)
                    / s.sizes[i].max(1) as f64;
                let h = l_at(&history, s.last_access_ms[i]) + value;
                if h.is_finite() { h.max(0.0) } else { 0.0 }
            })
            .collect();
        // Non-negative floats order like their IEEE bits.
        let keyed = (0..s.ids.len())
            .map(|i| {
                (
                    (priority[i].to_bits(), s.last_access_ms[i], s.ids[i]),
                    i as u32,
                )
            })
            .collect();
        let victims = smallest_until_goal(
            keyed,
            &s.sizes,
            Goal {
                bytes: goal.bytes_to_free,
                entries: goal.entries_to_free,
            },
        );
        let last_l = history.last().map_or(0.0, |p| p.1);
        let l = victims
            .iter()
            .map(|&i| priority[i as usize])
            .fold(last_l, f64::max);
        if history.last().is_some_and(|p| p.0 >= goal.now_ms) {
            // Same instant (or a clock step back): raise the latest point instead.
            if let Some(p) = history.last_mut() {
                p.1 = l;
            }
        } else {
            history.push((goal.now_ms, l));
        }
        if history.len() > MAX_HISTORY {
            let thinned: Vec<(u64, f64)> = history.iter().copied().skip(1).step_by(2).collect();
            *history = thinned;
        }
        Victims::Indices(victims)
    }
}

export!(Gdsf);

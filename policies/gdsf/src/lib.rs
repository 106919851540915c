//! GDSF eviction (GreedyDual-Size-Frequency): keeps what is expensive to recompute per byte.
//!
//! Each entry's value is `frequency × recompute cost / size`; the lowest value goes first.
//! Classic GDSF ages entries with an inflation value `L` raised on every eviction; with a whole
//! snapshot at hand this policy ages the frequency directly instead: hits count half as much
//! for every `halflife-ms` since the last access (config `halflife-ms=N`, default 7 days), so an
//! expensive entry nobody uses any more still leaves eventually.

wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use std::sync::atomic::{AtomicU64, Ordering};

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, number, settings, smallest_until_goal};

const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
static HALFLIFE_MS: AtomicU64 = AtomicU64::new(WEEK_MS);

struct Gdsf;

/// Value of keeping an entry: aged frequency × (cost + 1 ms) / size. Non-negative, so its
/// IEEE bits order like the number.
fn value(hits: u64, cost_ms: u64, size: u64, idle_ms: u64, halflife_ms: u64) -> u64 {
    let age = idle_ms as f64 / halflife_ms.max(1) as f64;
    let freq = (hits as f64 + 1.0) * (-age * std::f64::consts::LN_2).exp();
    let v = freq * (cost_ms as f64 + 1.0) / size.max(1) as f64;
    if v.is_finite() {
        v.max(0.0).to_bits()
    } else {
        0
    }
}

impl Guest for Gdsf {
    fn init(config: String) -> Result<PolicyInfo, String> {
        for (k, v) in settings(&config) {
            match k {
                "halflife-ms" => HALFLIFE_MS.store(number(k, v)?.max(1), Ordering::Relaxed),
                _ => return Err(format!("gdsf: unknown setting {k:?} (known: halflife-ms)")),
            }
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
        let halflife = HALFLIFE_MS.load(Ordering::Relaxed);
        let now = goal.now_ms;
        let keyed = (0..s.ids.len())
            .map(|i| {
                let idle = now.saturating_sub(s.last_access_ms[i]);
                let v = value(s.hits[i], s.cost_ms[i], s.sizes[i], idle, halflife);
                ((v, s.last_access_ms[i], s.ids[i]), i as u32)
            })
            .collect();
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free,
        };
        Victims::Indices(smallest_until_goal(keyed, &s.sizes, goal))
    }
}

export!(Gdsf);

//! LRU eviction: least recently used first; ties by oldest creation, then smallest id.
//!
//! The same order and the same stopping rule as larder's native `Lru`, so the two can be
//! compared exactly (larder-policy's tests do).

wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, smallest_until_goal_by};

struct Lru;

impl Guest for Lru {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "lru".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let Some(s) = snapshot else {
            return Victims::Indices(Vec::new());
        };
        // Sort by last access alone; (created, id) only break ties.
        let keyed = (0..s.ids.len())
            .map(|i| (s.last_access_ms[i], i as u32))
            .collect();
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free,
        };
        let tie = |i: u32| (s.created_ms[i as usize], s.ids[i as usize]);
        Victims::Indices(smallest_until_goal_by(keyed, tie, &s.sizes, goal))
    }
}

export!(Lru);

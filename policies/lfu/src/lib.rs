//! LFU eviction: fewest hits first; ties by least recently used, then oldest, then smallest id.

wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, smallest_until_goal};

struct Lfu;

impl Guest for Lfu {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "lfu".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let Some(s) = snapshot else {
            return Victims::Indices(Vec::new());
        };
        let keyed = (0..s.ids.len())
            .map(|i| {
                (
                    (s.hits[i], s.last_access_ms[i], s.created_ms[i], s.ids[i]),
                    i as u32,
                )
            })
            .collect();
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free,
        };
        Victims::Indices(smallest_until_goal(keyed, &s.sizes, goal))
    }
}

export!(Lfu);

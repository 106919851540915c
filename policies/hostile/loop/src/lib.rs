//! Hostile test guest: select-victims never returns.
//! larder-policy's tests check that the host stops or rejects it and falls back to native LRU.

wit_bindgen::generate!({ path: "../../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};

struct Hostile;

impl Guest for Hostile {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "hostile-loop".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let _ = (snapshot, goal);
        let mut x: u64 = 1;
        loop {
            // Opaque to the optimizer, so the loop is not removed.
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(Hostile);

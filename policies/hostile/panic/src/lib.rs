//! Hostile test guest: select-victims panics (a trap in wasm).
//! larder-policy's tests check that the host stops or rejects it and falls back to native LRU.

wit_bindgen::generate!({ path: "../../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};

struct Hostile;

impl Guest for Hostile {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "hostile-panic".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let n = snapshot.map_or(0, |s| s.ids.len());
        panic!(
            "hostile guest panics on purpose ({n} candidates, goal {} bytes)",
            goal.bytes_to_free
        )
    }
}

export!(Hostile);

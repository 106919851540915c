//! Hostile test guest: select-victims allocates and touches 1 GiB.
//! larder-policy's tests check that the host stops or rejects it and falls back to native LRU.

wit_bindgen::generate!({ path: "../../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};

struct Hostile;

impl Guest for Hostile {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "hostile-alloc".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let _ = (snapshot, goal);
        let mut v: Vec<u8> = Vec::with_capacity(1 << 30);
        v.resize(1 << 30, 1);
        // Opaque to the optimizer, which could otherwise drop the allocation altogether.
        let v = std::hint::black_box(v);
        Victims::Indices(vec![u32::from(v[v.len() - 1])])
    }
}

export!(Hostile);

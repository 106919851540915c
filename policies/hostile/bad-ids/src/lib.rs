//! Hostile test guest: select-victims answers with an index past the snapshot, a repeat, and unknown ids (config `ids`).
//! larder-policy's tests check that the host stops or rejects it and falls back to native LRU.

wit_bindgen::generate!({ path: "../../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};

static MODE_IDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Hostile;

impl Guest for Hostile {
    fn init(config: String) -> Result<PolicyInfo, String> {
        MODE_IDS.store(config == "ids", std::sync::atomic::Ordering::Relaxed);
        Ok(PolicyInfo {
            name: "hostile-bad-ids".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let n = snapshot.map_or(0, |s| s.ids.len()) as u32;
        let _ = goal;
        if MODE_IDS.load(std::sync::atomic::Ordering::Relaxed) {
            Victims::Ids(vec![u64::MAX, 0xdead_beef])
        } else {
            Victims::Indices(vec![0, n + 7, 0])
        }
    }
}

export!(Hostile);

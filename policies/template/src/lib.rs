//! Template for a larder eviction policy: copy this directory, rename the package in its
//! `Cargo.toml`, add it to `members` in `policies/Cargo.toml`, and run `cargo xtask policies`.
//! See `policies/README.md`.
//!
//! This example evicts the largest entries first (frees space with the fewest evictions).

// Generates the Rust types and the `Guest` trait from the WIT contract in `policies/wit/`.
wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, smallest_until_goal};

struct LargestFirst;

impl Guest for LargestFirst {
    /// Called once per instance with the `config` string from larder's configuration.
    /// Return an error to refuse a bad config (larder then disables the policy).
    fn init(_config: String) -> Result<PolicyInfo, String> {
        Ok(PolicyInfo {
            name: "largest-first".into(),
            // A stateless policy: no event stream, a columnar snapshot on every trim.
            wants_events: false,
            wants_snapshot: true,
        })
    }

    /// Only called when `wants_events` is true.
    fn on_events(_events: Vec<Event>) {}

    /// Return indices into the snapshot, in eviction order, just enough to meet the goal.
    /// Larder validates the list (range, repeats) and stops once the goal is met.
    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let Some(s) = snapshot else {
            return Victims::Indices(Vec::new());
        };
        // Smallest key first: negate the size by using `u64::MAX - size`.
        let keyed = (0..s.ids.len())
            .map(|i| ((u64::MAX - s.sizes[i], s.ids[i]), i as u32))
            .collect();
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free,
        };
        Victims::Indices(smallest_until_goal(keyed, &s.sizes, goal))
    }
}

export!(LargestFirst);

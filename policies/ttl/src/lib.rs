//! TTL eviction: entries idle longer than `ttl-ms` (config `ttl-ms=N`, default 7 days) go
//! first, oldest first, whatever the goal; then least recently used until the goal is met.

wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use std::sync::atomic::{AtomicU64, Ordering};

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};
use guest_util::{Goal, number, settings, smallest_until_goal};

static TTL_MS: AtomicU64 = AtomicU64::new(7 * 24 * 3600 * 1000);

struct Ttl;

impl Guest for Ttl {
    fn init(config: String) -> Result<PolicyInfo, String> {
        for (k, v) in settings(&config) {
            match k {
                "ttl-ms" => TTL_MS.store(number(k, v)?, Ordering::Relaxed),
                _ => return Err(format!("ttl: unknown setting {k:?} (known: ttl-ms)")),
            }
        }
        Ok(PolicyInfo {
            name: "ttl".into(),
            wants_events: false,
            wants_snapshot: true,
        })
    }

    fn on_events(_events: Vec<Event>) {}

    fn select_victims(snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let Some(s) = snapshot else {
            return Victims::Indices(Vec::new());
        };
        let ttl = TTL_MS.load(Ordering::Relaxed);
        let now = goal.now_ms;
        let mut expired = 0u64;
        let keyed: Vec<_> = (0..s.ids.len())
            .map(|i| {
                let live = now.saturating_sub(s.last_access_ms[i]) <= ttl;
                expired += u64::from(!live);
                (
                    (live, s.last_access_ms[i], s.created_ms[i], s.ids[i]),
                    i as u32,
                )
            })
            .collect();
        // Every expired entry goes, even past the goal.
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free.max(expired),
        };
        Victims::Indices(smallest_until_goal(keyed, &s.sizes, goal))
    }
}

export!(Ttl);

//! Hostile test guest: a stateful (event-driven) LRU that traps whenever it is asked to free
//! exactly 999 entries. larder-policy's tests use it to check that a trapped stateful policy
//! is re-instantiated with its entries replayed, and answers from that replayed state.

wit_bindgen::generate!({ path: "../../wit", world: "eviction-policy" });

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use exports::larder::policy::eviction::{Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims};

#[derive(Default)]
struct State {
    /// id -> (last access, size)
    entries: HashMap<u64, (u64, u64)>,
    /// (last access, id) in LRU order
    order: BTreeSet<(u64, u64)>,
}

impl State {
    fn touch(&mut self, id: u64, at: u64, size: Option<u64>) {
        let size = match self.entries.get(&id) {
            Some(&(old, s)) => {
                self.order.remove(&(old, id));
                size.unwrap_or(s)
            }
            None => match size {
                Some(s) => s,
                None => return,
            },
        };
        self.entries.insert(id, (at, size));
        self.order.insert((at, id));
    }

    fn remove(&mut self, id: u64) -> Option<u64> {
        let (at, size) = self.entries.remove(&id)?;
        self.order.remove(&(at, id));
        Some(size)
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct Flaky;

impl Guest for Flaky {
    fn init(_config: String) -> Result<PolicyInfo, String> {
        STATE.with(|s| *s.borrow_mut() = State::default());
        Ok(PolicyInfo {
            name: "hostile-flaky".into(),
            wants_events: true,
            wants_snapshot: false,
        })
    }

    fn on_events(events: Vec<Event>) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            for e in events {
                match e {
                    Event::Insert(m) => s.touch(m.id, m.last_access_ms, Some(m.size)),
                    Event::Access((id, at)) => s.touch(id, at, None),
                    Event::Evict((id, _)) => {
                        s.remove(id);
                    }
                }
            }
        });
    }

    fn select_victims(_snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        assert!(
            goal.entries_to_free != 999,
            "asked to free 999 entries: trapping on purpose"
        );
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let (mut bytes, mut n) = (0u64, 0u64);
            let mut out = Vec::new();
            while bytes < goal.bytes_to_free || n < goal.entries_to_free {
                let Some(&(_, id)) = s.order.first() else {
                    break;
                };
                bytes += s.remove(id).unwrap_or(0);
                n += 1;
                out.push(id);
            }
            Victims::Ids(out)
        })
    }
}

export!(Flaky);

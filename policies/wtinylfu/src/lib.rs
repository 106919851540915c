//! W-TinyLFU-style eviction (Einziger, Friedman & Manes, 2017), stateful.
//!
//! New entries enter a small LRU *window* (`window-pct`, default 1% of entries); the rest live
//! in a segmented LRU (*probation*, and *protected* for entries hit again while on probation,
//! at most `protected-pct`, default 80%, of the main part). A count-min sketch of 4-bit
//! counters, halved every `10 × width` increments, estimates how often each entry was used
//! recently. To free space the policy compares the window's LRU entry with the main part's LRU
//! entry and evicts the one the sketch says is used less: one-hit wonders leave fast, popular
//! entries survive scans.
//!
//! It learns from the host's event stream (`wants-events`) and needs no snapshot; it answers
//! with entry ids. An `insert` event's `hits` warms the sketch, which is how the state replayed
//! after a re-instantiation keeps most of what was learned.

wit_bindgen::generate!({ path: "../wit", world: "eviction-policy" });

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use exports::larder::policy::eviction::{
    EntryMeta, Event, Guest, PolicyInfo, ReclaimGoal, Snapshot, Victims,
};
use guest_util::{Goal, number, settings};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seg {
    Window,
    Probation,
    Protected,
}

struct Node {
    size: u64,
    seg: Seg,
    stamp: u64,
}

struct Sketch {
    rows: [Vec<u8>; 4],
    mask: u64,
    additions: u64,
    reset_at: u64,
}

impl Sketch {
    fn new(width: usize) -> Self {
        let width = width.next_power_of_two().max(64);
        Sketch {
            rows: std::array::from_fn(|_| vec![0u8; width]),
            mask: width as u64 - 1,
            additions: 0,
            reset_at: 10 * width as u64,
        }
    }

    fn slot(&self, id: u64, row: usize) -> usize {
        // splitmix64 with a per-row seed.
        let mut z = id ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(row as u64 + 1));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) & self.mask) as usize
    }

    fn increment(&mut self, id: u64) {
        for r in 0..4 {
            let s = self.slot(id, r);
            let c = &mut self.rows[r][s];
            *c = (*c + 1).min(15);
        }
        self.additions += 1;
        if self.additions >= self.reset_at {
            for row in &mut self.rows {
                row.iter_mut().for_each(|c| *c /= 2);
            }
            self.additions /= 2;
        }
    }

    fn frequency(&self, id: u64) -> u8 {
        (0..4)
            .map(|r| self.rows[r][self.slot(id, r)])
            .min()
            .unwrap_or(0)
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    segs: [BTreeMap<u64, u64>; 3],
    clock: u64,
    sketch: Sketch,
    window_pct: u64,
    protected_pct: u64,
}

fn seg_index(s: Seg) -> usize {
    match s {
        Seg::Window => 0,
        Seg::Probation => 1,
        Seg::Protected => 2,
    }
}

impl State {
    fn new(width: usize, window_pct: u64, protected_pct: u64) -> Self {
        State {
            nodes: HashMap::new(),
            segs: Default::default(),
            clock: 0,
            sketch: Sketch::new(width),
            window_pct,
            protected_pct,
        }
    }

    /// Move `id` to the MRU end of `seg`.
    fn place(&mut self, id: u64, seg: Seg) {
        self.clock += 1;
        let stamp = self.clock;
        if let Some(n) = self.nodes.get_mut(&id) {
            self.segs[seg_index(n.seg)].remove(&n.stamp);
            n.seg = seg;
            n.stamp = stamp;
            self.segs[seg_index(seg)].insert(stamp, id);
        }
    }

    fn lru_of(&self, seg: Seg) -> Option<u64> {
        self.segs[seg_index(seg)].values().next().copied()
    }

    fn rebalance(&mut self) {
        let total = self.nodes.len() as u64;
        let window_max = (total * self.window_pct / 100).max(1) as usize;
        while self.segs[0].len() > window_max {
            let Some(id) = self.lru_of(Seg::Window) else {
                break;
            };
            self.place(id, Seg::Probation);
        }
        let main = (self.segs[1].len() + self.segs[2].len()) as u64;
        let protected_max = (main * self.protected_pct / 100) as usize;
        while self.segs[2].len() > protected_max {
            let Some(id) = self.lru_of(Seg::Protected) else {
                break;
            };
            self.place(id, Seg::Probation);
        }
    }

    fn insert(&mut self, m: &EntryMeta) {
        if self.nodes.contains_key(&m.id) {
            return self.access(m.id);
        }
        for _ in 0..=m.hits.min(15) {
            self.sketch.increment(m.id);
        }
        self.nodes.insert(
            m.id,
            Node {
                size: m.size,
                seg: Seg::Window,
                stamp: 0,
            },
        );
        self.place(m.id, Seg::Window);
        self.rebalance();
    }

    fn access(&mut self, id: u64) {
        self.sketch.increment(id);
        let Some(seg) = self.nodes.get(&id).map(|n| n.seg) else {
            return;
        };
        let to = match seg {
            Seg::Window => Seg::Window,
            Seg::Probation | Seg::Protected => Seg::Protected,
        };
        self.place(id, to);
        self.rebalance();
    }

    fn remove(&mut self, id: u64) -> Option<Node> {
        let n = self.nodes.remove(&id)?;
        self.segs[seg_index(n.seg)].remove(&n.stamp);
        Some(n)
    }

    fn victim(&self) -> Option<u64> {
        let candidate = self.lru_of(Seg::Window);
        let main = self
            .lru_of(Seg::Probation)
            .or_else(|| self.lru_of(Seg::Protected));
        match (candidate, main) {
            (Some(c), Some(m)) => {
                // The window's candidate would be admitted to the main part only if it is
                // used more than the main part's victim.
                if self.sketch.frequency(c) > self.sketch.frequency(m) {
                    Some(m)
                } else {
                    Some(c)
                }
            }
            (c, m) => c.or(m),
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::new(1 << 16, 1, 80));
}

struct WTinyLfu;

impl Guest for WTinyLfu {
    fn init(config: String) -> Result<PolicyInfo, String> {
        let (mut width, mut window, mut protected) = (1u64 << 16, 1, 80);
        for (k, v) in settings(&config) {
            match k {
                "sketch-width" => width = number(k, v)?.clamp(64, 1 << 26),
                "window-pct" => window = number(k, v)?.clamp(1, 99),
                "protected-pct" => protected = number(k, v)?.clamp(1, 99),
                _ => {
                    return Err(format!(
                        "w-tinylfu: unknown setting {k:?} (known: sketch-width, window-pct, protected-pct)"
                    ));
                }
            }
        }
        STATE.with(|s| *s.borrow_mut() = State::new(width as usize, window, protected));
        Ok(PolicyInfo {
            name: "w-tinylfu".into(),
            wants_events: true,
            wants_snapshot: false,
        })
    }

    fn on_events(events: Vec<Event>) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            for e in &events {
                match e {
                    Event::Insert(m) => s.insert(m),
                    Event::Access((id, _at)) => s.access(*id),
                    Event::Evict((id, _why)) => {
                        s.remove(*id);
                    }
                }
            }
        });
    }

    fn select_victims(_snapshot: Option<Snapshot>, goal: ReclaimGoal) -> Victims {
        let goal = Goal {
            bytes: goal.bytes_to_free,
            entries: goal.entries_to_free,
        };
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let (mut bytes, mut entries) = (0u64, 0u64);
            let mut out = Vec::new();
            while !goal.met(bytes, entries) {
                let Some(id) = s.victim() else { break };
                if let Some(n) = s.remove(id) {
                    bytes = bytes.saturating_add(n.size);
                }
                entries += 1;
                out.push(id);
            }
            Victims::Ids(out)
        })
    }
}

export!(WTinyLfu);

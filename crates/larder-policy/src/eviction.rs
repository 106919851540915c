//! [`WasmEviction`]: an eviction-policy component behind larder's
//! [`EvictionPolicy`] seam.
//!
//! Snapshot policies (LRU, LFU, GDSF, TTL) get the store's candidates as columns and answer
//! with indices. Stateful policies (W-TinyLFU) get events instead: the host keeps a mirror of
//! what it told the guest, turns the difference between the mirror and each trim's candidates
//! into insert/access/evict events, and replays the mirror as inserts into a fresh instance
//! after a failure. Any failure falls back to the native [`Lru`] for that trim; three in a row
//! disable the policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru, validate_victims};

use crate::bindings::eviction::EvictionPolicyPre;
use crate::bindings::eviction::exports::larder::policy::eviction as wit;
use crate::bindings::eviction::larder::policy::types::{
    EntryMeta, Event, EvictReason, PolicyInfo, ReclaimGoal, Victims,
};
use crate::error::{PolicyError, Result};
use crate::sandbox::{Limits, Sandboxed};

/// Events per `on-events` call: bounds the guest memory one batch takes.
const EVENT_BATCH: usize = 1 << 16;

/// An eviction policy running as a WebAssembly component.
///
/// Cheap to share (`&self` methods, an internal lock); created by
/// [`PolicyHost::eviction`](crate::PolicyHost::eviction).
#[derive(Debug)]
pub struct WasmEviction {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    guest: Sandboxed<crate::bindings::eviction::EvictionPolicy>,
    config: String,
    info: Option<PolicyInfo>,
    /// Stateful policies: what the guest has been told, by entry id.
    mirror: HashMap<u64, EntryMeta>,
}

impl WasmEviction {
    pub(crate) fn new(
        file_name: String,
        pre: EvictionPolicyPre<crate::sandbox::Sandbox>,
        config: String,
        limits: Limits,
    ) -> Result<Self> {
        let instantiate = Arc::new(move |store: &mut wasmtime::Store<_>| pre.instantiate(store));
        let mut state = State {
            guest: Sandboxed::new(file_name, "eviction policy", limits, instantiate),
            config,
            info: None,
            mirror: HashMap::new(),
        };
        // Instantiate and init now, so a broken policy or config is reported at load time.
        state.live()?;
        let name = state.guest.policy.clone();
        Ok(WasmEviction {
            name,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the guest said about itself at `init`.
    pub fn wants_events(&self) -> bool {
        self.lock().info.as_ref().is_some_and(|i| i.wants_events)
    }

    /// Whether the policy has been disabled after repeated failures.
    pub fn is_disabled(&self) -> bool {
        self.lock().guest.is_disabled()
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.lock().guest.failures()
    }

    /// Start over from a fresh instance that knows nothing (what a simulation of another
    /// cache needs): the guest is re-instantiated and re-initialized, and the host forgets
    /// the events it sent.
    ///
    /// # Errors
    /// The new instance fails to start (counted as a failure).
    pub fn reset(&self) -> Result<()> {
        let mut st = self.lock();
        st.guest.check_enabled()?;
        st.guest.drop_instance();
        st.mirror.clear();
        let r = st.live();
        st.guest.settle(r)
    }

    /// Ask the guest for victims, without the fallback: what [`EvictionPolicy::select_victims`]
    /// does before it falls back to native LRU.
    ///
    /// # Errors
    /// The guest trapped, ran out of time or memory, answered an invalid victim list, or is
    /// disabled.
    pub fn try_select_victims(
        &self,
        candidates: &Candidates,
        goal: EvictionGoal,
        now_ms: u64,
    ) -> Result<Vec<usize>> {
        let mut st = self.lock();
        st.guest.check_enabled()?;
        let r = st.select(candidates, goal, now_ms);
        st.guest.settle(r)
    }
}

impl State {
    /// Instantiate if needed; a fresh instance is initialized (and its state replayed).
    fn live(&mut self) -> Result<()> {
        let started = self
            .guest
            .start(|b, s| b.larder_policy_eviction().call_init(s, &self.config))?;
        let Some(info) = started else {
            return Ok(());
        };
        self.guest.name_from_guest(&info.name);
        let wants_events = info.wants_events;
        self.info = Some(info);
        if wants_events && !self.mirror.is_empty() {
            let mut known: Vec<EntryMeta> = self.mirror.values().copied().collect();
            known.sort_unstable_by_key(|m| (m.last_access_ms, m.id));
            let events: Vec<Event> = known.into_iter().map(Event::Insert).collect();
            self.send(&events)?;
        }
        Ok(())
    }

    fn send(&mut self, events: &[Event]) -> Result<()> {
        for chunk in events.chunks(EVENT_BATCH) {
            self.guest.call("on-events", |b, s| {
                b.larder_policy_eviction().call_on_events(s, chunk)
            })?;
        }
        Ok(())
    }

    /// Bring a stateful guest up to date with the candidates: new ids are inserts, changed
    /// access times are accesses, vanished ids are evictions.
    fn sync_events(&mut self, c: &Candidates) -> Result<()> {
        let mut events: Vec<(u64, Event)> = Vec::new();
        let mut seen = HashMap::with_capacity(c.len());
        for i in 0..c.len() {
            let meta = EntryMeta {
                id: c.ids[i],
                size: c.size[i],
                created_ms: c.created_ms[i],
                last_access_ms: c.last_access_ms[i],
                hits: c.hits[i],
                cost_ms: c.cost_ms[i],
            };
            seen.insert(meta.id, ());
            match self.mirror.insert(meta.id, meta) {
                None => events.push((meta.last_access_ms, Event::Insert(meta))),
                Some(old) if old.last_access_ms < meta.last_access_ms => {
                    // One event per hit since the last trim (bounded): frequency matters.
                    let n = meta.hits.saturating_sub(old.hits).clamp(1, 16);
                    for _ in 0..n {
                        events.push((
                            meta.last_access_ms,
                            Event::Access((meta.id, meta.last_access_ms)),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        let gone: Vec<u64> = self
            .mirror
            .keys()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.mirror.remove(&id);
            events.push((0, Event::Evict((id, EvictReason::Manual))));
        }
        events.sort_by_key(|e| e.0);
        let events: Vec<Event> = events.into_iter().map(|e| e.1).collect();
        self.send(&events)
    }

    fn select(&mut self, c: &Candidates, goal: EvictionGoal, now_ms: u64) -> Result<Vec<usize>> {
        self.live()?;
        let (wants_events, wants_snapshot) = self
            .info
            .as_ref()
            .map_or((false, true), |i| (i.wants_events, i.wants_snapshot));
        if wants_events {
            self.sync_events(c)?;
        }
        let n = c.len();
        let snapshot = wants_snapshot.then(|| wit::Snapshot {
            ids: &c.ids,
            sizes: &c.size,
            created_ms: &c.created_ms,
            last_access_ms: &c.last_access_ms,
            hits: &c.hits,
            cost_ms: &c.cost_ms,
        });
        let goal = ReclaimGoal {
            bytes_to_free: goal.bytes,
            entries_to_free: goal.entries,
            now_ms,
        };
        let answer = self.guest.call("select-victims", |b, s| {
            b.larder_policy_eviction()
                .call_select_victims(s, snapshot, goal)
        })?;
        let policy = self.guest.policy.clone();
        let invalid = |reason: String| PolicyError::InvalidAnswer {
            policy: policy.clone(),
            call: "select-victims",
            reason,
        };
        let victims: Vec<usize> = match answer {
            Victims::Indices(ix) => ix.into_iter().map(|i| i as usize).collect(),
            Victims::Ids(ids) => {
                let index: HashMap<u64, usize> =
                    c.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
                ids.iter()
                    .map(|id| {
                        index
                            .get(id)
                            .copied()
                            .ok_or_else(|| invalid(format!("unknown entry id {id}")))
                    })
                    .collect::<Result<_>>()?
            }
        };
        validate_victims(&policy, &victims, n).map_err(|e| invalid(e.to_string()))?;
        if wants_events {
            // The guest forgets its victims; so does the mirror (a victim the store keeps
            // after all comes back as an insert next time).
            for &v in &victims {
                self.mirror.remove(&c.ids[v]);
            }
        }
        Ok(victims)
    }
}

impl EvictionPolicy for WasmEviction {
    fn name(&self) -> &str {
        &self.name
    }

    /// The guest's victims; on any failure (logged as a warning), native LRU's.
    fn select_victims(
        &self,
        candidates: &Candidates,
        goal: EvictionGoal,
        now_ms: u64,
    ) -> larder_core::Result<Vec<usize>> {
        match self.try_select_victims(candidates, goal, now_ms) {
            Ok(v) => Ok(v),
            Err(_) => Lru.select_victims(candidates, goal, now_ms),
        }
    }
}

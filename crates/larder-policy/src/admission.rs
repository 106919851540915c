//! [`WasmAdmission`]: an admission-policy component (store this new entry or not).
//!
//! A failing guest admits: losing a cache entry's chance is cheap, refusing everything is not.

use std::sync::{Arc, Mutex, MutexGuard};

pub use larder_core::admission::AdmissionCandidate;
use larder_core::admission::AdmissionPolicy;

use crate::bindings::admission::AdmissionPolicyPre;
use crate::bindings::admission::larder::policy::types::EntryMeta;
use crate::error::Result;
use crate::sandbox::{Limits, Sandbox, Sandboxed};

/// An admission policy running as a WebAssembly component.
#[derive(Debug)]
pub struct WasmAdmission {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    guest: Sandboxed<crate::bindings::admission::AdmissionPolicy>,
    config: String,
}

impl State {
    fn live(&mut self) -> Result<()> {
        let started = self
            .guest
            .start(|b, s| b.larder_policy_admission().call_init(s, &self.config))?;
        if let Some(name) = started {
            self.guest.name_from_guest(&name);
        }
        Ok(())
    }
}

impl WasmAdmission {
    pub(crate) fn new(
        file_name: String,
        pre: AdmissionPolicyPre<Sandbox>,
        config: String,
        limits: Limits,
    ) -> Result<Self> {
        let instantiate = Arc::new(move |store: &mut wasmtime::Store<_>| pre.instantiate(store));
        let mut state = State {
            guest: Sandboxed::new(file_name, "admission policy", limits, instantiate),
            config,
        };
        state.live()?;
        Ok(WasmAdmission {
            name: state.guest.policy.clone(),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the policy has been disabled after repeated failures.
    pub fn is_disabled(&self) -> bool {
        self.lock().guest.is_disabled()
    }

    /// The guest's decision, without the fallback.
    ///
    /// # Errors
    /// The guest failed or is disabled.
    pub fn try_admit(&self, candidate: AdmissionCandidate, now_ms: u64) -> Result<bool> {
        let mut st = self.lock();
        st.guest.check_enabled()?;
        let meta = EntryMeta {
            id: 0,
            size: candidate.size,
            created_ms: candidate.created_ms,
            last_access_ms: candidate.created_ms,
            hits: 0,
            cost_ms: candidate.cost_ms,
        };
        let r = st.live().and_then(|()| {
            st.guest.call("admit", |b, s| {
                b.larder_policy_admission().call_admit(s, meta, now_ms)
            })
        });
        st.guest.settle(r)
    }

    /// Whether to store the entry: the guest's decision, or `true` if it fails.
    pub fn admit(&self, candidate: AdmissionCandidate, now_ms: u64) -> bool {
        self.try_admit(candidate, now_ms).unwrap_or(true)
    }
}

impl AdmissionPolicy for WasmAdmission {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit(&self, candidate: AdmissionCandidate, now_ms: u64) -> bool {
        WasmAdmission::admit(self, candidate, now_ms)
    }
}

//! [`WasmNormalizer`]: a path-normalizer component behind larder's [`PathNormalizer`] seam.
//!
//! Normalization fails closed: when the guest fails (or is disabled) every call returns an
//! error, and the caller treats the task as uncacheable, since a guessed normalization could
//! produce a false hit.

use std::sync::{Arc, Mutex, MutexGuard};

use larder_core::digest::Digest;
use larder_core::normalize::PathNormalizer;

use crate::bindings::normalize::PathNormalizerPre;
use crate::bindings::normalize::exports::larder::policy::normalize::Context;
use crate::error::{PolicyError, Result};
use crate::sandbox::{Limits, Sandbox, Sandboxed};

/// The machine facts a normalizer works from (they are not part of its identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalizeContext {
    /// The checkout's root directory.
    pub workspace_root: String,
    /// The user's home directory.
    pub home_dir: Option<String>,
    /// The build's output directory, when it is outside the workspace.
    pub target_dir: Option<String>,
    /// `linux`, `macos`, `windows`, ... (`std::env::consts::OS`).
    pub host_os: String,
}

/// A path normalizer running as a WebAssembly component.
#[derive(Debug)]
pub struct WasmNormalizer {
    id: Digest,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    guest: Sandboxed<crate::bindings::normalize::PathNormalizer>,
    config: String,
    ctx: Context,
}

impl State {
    fn live(&mut self) -> Result<()> {
        let started = self.guest.start(|b, s| {
            b.larder_policy_normalize()
                .call_init(s, &self.config, &self.ctx)
        })?;
        if let Some(name) = started {
            self.guest.name_from_guest(&name);
        }
        Ok(())
    }

    fn check_len<T>(&self, call: &'static str, got: &[T], want: usize) -> Result<()> {
        if got.len() == want {
            return Ok(());
        }
        Err(PolicyError::InvalidAnswer {
            policy: self.guest.policy.clone(),
            call,
            reason: format!("{} results for {want} inputs", got.len()),
        })
    }
}

impl WasmNormalizer {
    pub(crate) fn new(
        file_name: String,
        wasm_hash: blake3::Hash,
        pre: PathNormalizerPre<Sandbox>,
        config: String,
        ctx: NormalizeContext,
        limits: Limits,
    ) -> Result<Self> {
        // The rules are the code and its config; the machine context must stay out of the id,
        // or two checkouts in different places would never share entries.
        let mut h = blake3::Hasher::new_derive_key("larder 2026 normalizer wasm v1");
        h.update(wasm_hash.as_bytes());
        h.update(&(config.len() as u64).to_le_bytes());
        h.update(config.as_bytes());
        let id = Digest::from(h.finalize());
        let instantiate = Arc::new(move |store: &mut wasmtime::Store<_>| pre.instantiate(store));
        let mut state = State {
            guest: Sandboxed::new(file_name, "path normalizer", limits, instantiate),
            config,
            // The guest's own record, built once for every (re-)init.
            ctx: Context {
                workspace_root: ctx.workspace_root,
                home_dir: ctx.home_dir,
                target_dir: ctx.target_dir,
                host_os: ctx.host_os,
            },
        };
        state.live()?;
        Ok(WasmNormalizer {
            id,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the normalizer has been disabled after repeated failures.
    pub fn is_disabled(&self) -> bool {
        self.lock().guest.is_disabled()
    }

    /// Normalize many paths in one guest call.
    ///
    /// # Errors
    /// The guest failed, answered the wrong number of results, or is disabled.
    pub fn normalize_paths(&self, paths: &[String]) -> Result<Vec<String>> {
        let mut st = self.lock();
        st.guest.check_enabled()?;
        let r = st.live().and_then(|()| {
            let out = st.guest.call("normalize-paths", |b, s| {
                b.larder_policy_normalize().call_normalize_paths(s, paths)
            })?;
            st.check_len("normalize-paths", &out, paths.len())?;
            Ok(out)
        });
        Ok(st
            .guest
            .settle(r)?
            .into_iter()
            .zip(paths)
            .map(|(n, p)| n.unwrap_or_else(|| p.clone()))
            .collect())
    }

    /// Normalize many (variable name, value) pairs in one guest call; name `""` for arguments.
    ///
    /// # Errors
    /// The guest failed, answered the wrong number of results, or is disabled.
    pub fn normalize_values(&self, items: &[(String, String)]) -> Result<Vec<String>> {
        let mut st = self.lock();
        st.guest.check_enabled()?;
        let r = st.live().and_then(|()| {
            let out = st.guest.call("normalize-values", |b, s| {
                b.larder_policy_normalize().call_normalize_values(s, items)
            })?;
            st.check_len("normalize-values", &out, items.len())?;
            Ok(out)
        });
        Ok(st
            .guest
            .settle(r)?
            .into_iter()
            .zip(items)
            .map(|(n, (_, v))| n.unwrap_or_else(|| v.clone()))
            .collect())
    }
}

impl PathNormalizer for WasmNormalizer {
    fn id(&self) -> Digest {
        self.id
    }

    fn normalize_path(&self, path: &str) -> larder_core::Result<String> {
        let mut v = self.normalize_paths(&[path.to_owned()])?;
        Ok(v.pop().unwrap_or_default())
    }

    fn normalize_value(&self, name: &str, value: &str) -> larder_core::Result<String> {
        let mut v = self.normalize_values(&[(name.to_owned(), value.to_owned())])?;
        Ok(v.pop().unwrap_or_default())
    }
}

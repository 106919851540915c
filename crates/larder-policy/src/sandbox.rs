//! One guest instance in its own [`Store`]: the memory cap, call deadlines, and the
//! strike counter that drops a failed instance and disables a policy after
//! [`MAX_CONSECUTIVE_FAILURES`] failures in a row.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, Trap};

use crate::engine::{engine, ticks};
use crate::error::{PolicyError, Result};

/// Failures in a row after which a policy is disabled for the life of the process.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// Resource bounds for every guest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (select-victims, admit, a normalization batch), and of
    /// instantiation plus `init`.
    pub call_timeout: Duration,
    /// Largest linear memory a guest may grow to, in bytes. Growing past it traps.
    pub max_memory: usize,
}

impl Default for Limits {
    /// 2 s per call, 512 MiB of memory: room for a select-victims over a few million entries
    /// (a snapshot costs 48 bytes an entry, plus the policy's own working set).
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(2),
            max_memory: 512 << 20,
        }
    }
}

/// What a guest's store holds: only the memory limiter (guests import nothing).
pub(crate) struct Sandbox {
    max_memory: usize,
    /// Set when the guest asked for more memory than allowed (the grow then traps).
    refused: Option<usize>,
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.refused = Some(desired);
            return Err(wasmtime::format_err!(
                "memory growth to {desired} bytes refused (limit {} bytes)",
                self.max_memory
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; real policies need a handful.
        Ok(desired <= 100_000)
    }
}

/// Creates a fresh instance's bindings in a store.
pub(crate) type Instantiate<B> =
    Arc<dyn Fn(&mut Store<Sandbox>) -> wasmtime::Result<B> + Send + Sync>;

/// A policy's guest: instantiated lazily, dropped on failure, disabled after repeated failures.
pub(crate) struct Sandboxed<B> {
    /// The policy's name for messages (file name until `init` names it).
    pub(crate) policy: String,
    /// Whether a guest `init` has named the policy ([`Self::name_from_guest`]).
    named: bool,
    /// "eviction policy", "admission policy" or "path normalizer", for the warning.
    kind: &'static str,
    limits: Limits,
    instantiate: Instantiate<B>,
    live: Option<(Store<Sandbox>, B)>,
    failures: u32,
    disabled: Option<String>,
}

impl<B> fmt::Debug for Sandboxed<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandboxed")
            .field("policy", &self.policy)
            .field("kind", &self.kind)
            .field("limits", &self.limits)
            .field("live", &self.live.is_some())
            .field("failures", &self.failures)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl<B> Sandboxed<B> {
    pub(crate) fn new(
        policy: String,
        kind: &'static str,
        limits: Limits,
        instantiate: Instantiate<B>,
    ) -> Self {
        Sandboxed {
            policy,
            named: false,
            kind,
            limits,
            instantiate,
            live: None,
            failures: 0,
            disabled: None,
        }
    }

    /// The error to return while disabled, if disabled.
    pub(crate) fn check_enabled(&self) -> Result<()> {
        match &self.disabled {
            Some(last) => Err(PolicyError::Disabled {
                policy: self.policy.clone(),
                failures: self.failures,
                last: last.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the policy was disabled.
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.is_some()
    }

    /// Failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Make sure an instance exists; a fresh one runs the guest's `init` (`init` here), whose
    /// answer is returned. `None`: the instance was already live.
    ///
    /// # Errors
    /// Instantiation or `init` failed, or `init` refused its config ([`PolicyError::Init`]).
    pub(crate) fn start<T>(
        &mut self,
        init: impl FnOnce(&B, &mut Store<Sandbox>) -> wasmtime::Result<std::result::Result<T, String>>,
    ) -> Result<Option<T>> {
        if self.live.is_some() {
            return Ok(None);
        }
        let engine = engine()?;
        let mut store = Store::new(
            engine,
            Sandbox {
                max_memory: self.limits.max_memory,
                refused: None,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(ticks(self.limits.call_timeout));
        store.epoch_deadline_trap();
        let bindings = match (self.instantiate)(&mut store) {
            Ok(b) => b,
            Err(e) => return Err(self.classify("instantiate", &mut store, e)),
        };
        self.live = Some((store, bindings));
        let answer = self
            .call("init", init)?
            .map_err(|message| PolicyError::Init {
                policy: self.policy.clone(),
                message,
            })?;
        Ok(Some(answer))
    }

    /// Prefix the policy's name with the name its first `init` gave ("lru (lru.wasm)": the
    /// guest's own name and where it came from).
    pub(crate) fn name_from_guest(&mut self, name: &str) {
        if !self.named && !name.is_empty() {
            self.policy = format!("{name} ({})", self.policy);
            self.named = true;
        }
    }

    /// Run one guest call under the time budget. The instance must exist ([`Self::start`]).
    pub(crate) fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&B, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let budget = ticks(self.limits.call_timeout);
        let Some((mut store, bindings)) = self.live.take() else {
            return Err(PolicyError::Trap {
                policy: self.policy.clone(),
                call,
                message: "no live instance".into(),
            });
        };
        store.set_epoch_deadline(budget);
        store.data_mut().refused = None;
        match f(&bindings, &mut store) {
            Ok(r) => {
                self.live = Some((store, bindings));
                Ok(r)
            }
            // The instance is dropped here: after a trap its state cannot be trusted.
            Err(e) => Err(self.classify(call, &mut store, e)),
        }
    }

    fn classify(
        &self,
        call: &'static str,
        store: &mut Store<Sandbox>,
        e: wasmtime::Error,
    ) -> PolicyError {
        let policy = self.policy.clone();
        if let Some(requested) = store.data_mut().refused.take() {
            return PolicyError::MemoryLimit {
                policy,
                call,
                requested,
                limit: self.limits.max_memory,
            };
        }
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PolicyError::Timeout {
                policy,
                call,
                budget_ms: self.limits.call_timeout.as_millis() as u64,
            };
        }
        let message = match e.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) => {
                "wasm `unreachable` executed (a Rust guest panicked, or aborted)".to_owned()
            }
            Some(t) => t.to_string(),
            None => crate::engine::one_line(&format!("{e:#}")),
        };
        PolicyError::Trap {
            policy,
            call,
            message,
        }
    }

    /// Drop the instance (the next call starts a fresh one); the strike count and a disabled
    /// state stay.
    pub(crate) fn drop_instance(&mut self) {
        self.live = None;
    }

    /// Count an operation's outcome: a success starts the strike count again, a failure is
    /// [`Self::failed`].
    pub(crate) fn settle<R>(&mut self, outcome: Result<R>) -> Result<R> {
        match outcome {
            Ok(r) => {
                self.failures = 0;
                Ok(r)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// A failed operation: drop the instance (the next call re-instantiates), count a strike,
    /// and disable the policy, with one warning, at the third in a row.
    pub(crate) fn failed(&mut self, err: PolicyError) -> PolicyError {
        self.live = None;
        if self.disabled.is_some() {
            return err;
        }
        self.failures += 1;
        if self.failures >= MAX_CONSECUTIVE_FAILURES {
            tracing::warn!(
                "{} {} disabled after {} consecutive failures; {}. Last failure: {err}",
                self.kind,
                self.policy,
                self.failures,
                match self.kind {
                    "eviction policy" => "trimming falls back to native LRU",
                    "admission policy" => "every entry is admitted",
                    _ => "tasks that need normalization are not cached",
                },
            );
            self.disabled = Some(err.to_string());
        } else {
            tracing::warn!(
                "{} {} failed ({} of {MAX_CONSECUTIVE_FAILURES} before it is disabled): {err}",
                self.kind,
                self.policy,
                self.failures
            );
        }
        err
    }
}

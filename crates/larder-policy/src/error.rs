//! Errors of the policy host, each naming the policy and what it was doing.

use std::path::PathBuf;

/// A `Result` whose error defaults to [`PolicyError`].
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

/// What went wrong loading or running a policy component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The `.wasm` file (or the compiled-component cache) could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What larder was doing.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a component wasmtime can compile.
    #[error("policy {policy}: not a valid WebAssembly component: {message}")]
    Compile {
        /// The policy (file name).
        policy: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component does not export what this kind of policy needs, or imports something.
    #[error("policy {policy}: not {expected}: {message}")]
    WrongShape {
        /// The policy (file name).
        policy: String,
        /// What was expected (`an eviction policy (world larder:policy/eviction-policy)`, ...).
        expected: &'static str,
        /// wasmtime's explanation.
        message: String,
    },
    /// The guest's `init` refused its configuration.
    #[error("policy {policy}: init refused its config: {message}")]
    Init {
        /// The policy.
        policy: String,
        /// The guest's message.
        message: String,
    },
    /// A call ran past its time budget and was interrupted.
    #[error("policy {policy}: {call} exceeded its time budget of {budget_ms} ms and was stopped")]
    Timeout {
        /// The policy.
        policy: String,
        /// The guest function.
        call: &'static str,
        /// The budget.
        budget_ms: u64,
    },
    /// The guest tried to grow its memory past the cap.
    #[error(
        "policy {policy}: {call} tried to grow its memory to {requested} bytes, over the limit of {limit} bytes, and was stopped"
    )]
    MemoryLimit {
        /// The policy.
        policy: String,
        /// The guest function.
        call: &'static str,
        /// The size asked for.
        requested: usize,
        /// The cap.
        limit: usize,
    },
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`, ...).
    #[error("policy {policy}: {call} trapped: {message}")]
    Trap {
        /// The policy.
        policy: String,
        /// The guest function.
        call: &'static str,
        /// wasmtime's description, with the guest backtrace when there is one.
        message: String,
    },
    /// The guest answered something the contract forbids (unknown ids, repeats, wrong length).
    #[error("policy {policy}: {call} returned an invalid answer: {reason}")]
    InvalidAnswer {
        /// The policy.
        policy: String,
        /// The guest function.
        call: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The policy failed too often in a row and is no longer called.
    #[error("policy {policy} is disabled after {failures} consecutive failures (last: {last})")]
    Disabled {
        /// The policy.
        policy: String,
        /// How many failures disabled it.
        failures: u32,
        /// The last failure.
        last: String,
    },
}

impl From<PolicyError> for larder_core::Error {
    fn from(e: PolicyError) -> Self {
        larder_core::Error::Store {
            store: "policy".into(),
            message: e.to_string(),
            temporary: false,
            source: Some(Box::new(e)),
        }
    }
}

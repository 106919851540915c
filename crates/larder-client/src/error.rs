//! What can fail, by step. Every variant wraps the [`larder_core::Error`] underneath, so a
//! front-end can word a step's failure its own way ([`Error::into_inner`]) or print the chain
//! as it is (`cannot hash the inputs: reading input a.c: ...`).

/// A step of the task-cache flow that failed.
///
/// A cache that fails is a warning and a miss for a build, never a failed build: which of
/// these a front-end turns into an error is its choice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file could not be read or hashed ([`Task::hash_inputs`](crate::Task::hash_inputs)).
    #[error("cannot hash the inputs")]
    Hash(#[source] larder_core::Error),
    /// A path or value of the task could not be normalized ([`Task::sign`](crate::Task::sign)):
    /// the task must not be cached, as a guessed signature could give false hits.
    #[error("cannot normalize the task's paths")]
    Normalize(#[source] larder_core::Error),
    /// Reading the entry under the key failed.
    #[error("looking up")]
    LookUp(#[source] larder_core::Error),
    /// Reading an entry's captured stdout or stderr failed.
    #[error("reading captured output")]
    ReadCaptured(#[source] larder_core::Error),
    /// Placing the outputs failed (other than a missing or corrupt blob, which is a miss).
    #[error("restoring outputs")]
    Restore(#[source] larder_core::Error),
    /// Reading the outputs from disk into an entry failed.
    #[error("reading the outputs")]
    Collect(#[source] larder_core::Error),
    /// Storing the captured stdout or stderr failed.
    #[error(transparent)]
    StoreCaptured(larder_core::Error),
    /// Storing the outputs' blobs or the entry failed.
    #[error("storing the outputs")]
    Store(#[source] larder_core::Error),
    /// Reading the store's figures or trimming it failed.
    #[error("trim failed")]
    Trim(#[source] larder_core::Error),
}

impl Error {
    /// The error underneath, for a front-end that names the step itself.
    pub fn into_inner(self) -> larder_core::Error {
        match self {
            Error::Hash(e)
            | Error::Normalize(e)
            | Error::LookUp(e)
            | Error::ReadCaptured(e)
            | Error::Restore(e)
            | Error::Collect(e)
            | Error::StoreCaptured(e)
            | Error::Store(e)
            | Error::Trim(e) => e,
        }
    }
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

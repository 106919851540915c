//! Errors shared by every store, classified so callers can decide what to do with them.
//!
//! The classification ([`ErrorKind`]) is what the edges of larder act on: a `NotFound` is a
//! miss, `InvalidInput` is the caller's fault and is reported as such, `Temporary` may be
//! retried, and anything a remote store returns becomes a miss plus a warning at the CLI,
//! worker and server edges so that a failing cache never fails a build.

use std::io;

/// A `Result` whose error defaults to larder's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an error should be handled by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The entry or blob does not exist (a cache miss).
    NotFound,
    /// The request itself is wrong: a bad key, an unsafe path, an over-sized payload.
    InvalidInput,
    /// Stored data failed verification; it has been (or should be) removed.
    Corrupt,
    /// The operation may succeed if retried (time-out, connection reset, throttling).
    Temporary,
    /// The operation will not succeed if retried.
    Permanent,
}

/// Errors returned by larder's libraries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No entry or blob under that name.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// A key that larder refuses to store under.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key, as given (NUL bytes escaped by `Debug`).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A relative path (output name, entry member) that is not safe to use.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Some other invalid argument.
    #[error("{message}")]
    InvalidInput {
        /// What is wrong with the input.
        message: String,
    },
    /// A payload or document over a configured bound.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Stored data failed verification.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was corrupt (an entry, a blob digest).
        what: String,
        /// What check failed.
        reason: String,
    },
    /// The store does not implement this operation (see its [`Capability`](crate::Capability)).
    #[error("{store} does not support {operation}")]
    NotSupported {
        /// The store's name.
        store: String,
        /// The operation.
        operation: &'static str,
    },
    /// An entry refused because no trusted key signed it (see [`crate::layer::trust`]).
    #[error("entry {key} refused: {reason}")]
    Untrusted {
        /// The key it was to be stored under.
        key: String,
        /// Why: unsigned, signed by a key that is not trusted, or a signature that does not
        /// verify.
        reason: String,
    },
    /// A local I/O error, with what larder was doing at the time.
    #[error("{context}: {source}")]
    Io {
        /// What larder was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An error from a store's own machinery (database, network, service).
    #[error("{store}: {message}")]
    Store {
        /// The store's name.
        store: String,
        /// What went wrong.
        message: String,
        /// Whether retrying may help.
        temporary: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl Error {
    /// Classify this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidKey { .. }
            | Error::UnsafePath { .. }
            | Error::InvalidInput { .. }
            | Error::TooLarge { .. } => ErrorKind::InvalidInput,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::NotSupported { .. } | Error::Untrusted { .. } => ErrorKind::Permanent,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::Interrupted
                | io::ErrorKind::TimedOut
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => ErrorKind::Temporary,
                _ => ErrorKind::Permanent,
            },
            Error::Store { temporary, .. } => {
                if *temporary {
                    ErrorKind::Temporary
                } else {
                    ErrorKind::Permanent
                }
            }
        }
    }

    /// Whether retrying the operation may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind() == ErrorKind::Temporary
    }

    /// Whether this error means "not in the cache".
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Wrap an I/O error with what larder was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A corrupt-data error.
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An invalid-input error with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }
}

/// Extension to attach context to `io::Result`s.
pub trait IoResultExt<T> {
    /// Turn an I/O error into [`Error::Io`] with the given context.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind() {
        let e = Error::io("reading", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.is_not_found());
        let e = Error::io("reading", io::Error::from(io::ErrorKind::TimedOut));
        assert!(e.is_temporary());
        let e = Error::io("reading", io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(
            Error::InvalidKey {
                key: "x".into(),
                reason: "r"
            }
            .kind(),
            ErrorKind::InvalidInput
        );
    }
}

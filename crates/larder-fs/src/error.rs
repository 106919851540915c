//! The filesystem store's own errors, mapped onto larder's shared kinds.

use larder_core::Error as CoreError;

/// Errors only this store produces. Everything else uses [`larder_core::Error`] directly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The index database failed.
    #[error("index {context}: {source}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: rusqlite::Error,
    },
    /// The index was written by a newer larder.
    #[error("index schema version {found} is newer than this build reads ({supported})")]
    NewerSchema { found: i64, supported: i64 },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// Whether this is a database error that means the file is damaged (not just busy).
    pub(crate) fn is_corruption(&self) -> bool {
        matches!(self, Error::Sqlite { source, .. } if is_corrupt_sqlite(source))
    }
}

/// Whether a SQLite error says the database file is damaged or not a database.
pub(crate) fn is_corrupt_sqlite(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn is_busy_sqlite(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl From<Error> for CoreError {
    fn from(e: Error) -> CoreError {
        let temporary = match &e {
            Error::Sqlite { source, .. } => is_busy_sqlite(source),
            Error::NewerSchema { .. } => false,
            Error::Join(_) => false,
        };
        CoreError::Store {
            store: "fs".into(),
            // The message carries the whole chain: callers often print errors with `{}`.
            message: e.to_string(),
            temporary,
            source: None,
        }
    }
}

/// Attach context to SQLite results.
pub(crate) trait SqlResultExt<T> {
    /// Wrap the error with what the store was doing.
    fn sql(self, context: &'static str) -> Result<T, Error>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn sql(self, context: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Sqlite { context, source })
    }
}

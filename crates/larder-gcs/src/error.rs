//! How GCS failures become larder's classified errors.
//!
//! Temporary (worth a retry): time-outs, connection failures, truncated responses, 408, 429
//! and 5xx. Everything else is permanent, with the service's message in the text so a missing
//! bucket or refused credentials read as such.

use larder_core::Error;

pub(crate) const STORE: &str = "larder-gcs";

/// A failure of one JSON API request, before classification.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcsError {
    /// The service answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// No answer: connect, I/O, time-out.
    #[error("{0}")]
    Transport(#[from] reqwest_gcs::Error),
    /// Credentials could not be obtained.
    #[error(
        "no credentials: {0} (set up Application Default Credentials, or LARDER_GCS_ANONYMOUS=1 for an emulator)"
    )]
    Auth(String),
    /// A response that is not what the JSON API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl GcsError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            GcsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn is_temporary(&self) -> bool {
        match self {
            GcsError::Status { status, .. } => status_is_temporary(*status),
            GcsError::Transport(e) => !e.is_builder() && !e.is_redirect(),
            GcsError::Auth(_) | GcsError::Decode(_) => false,
        }
    }

    /// Classified, with `what` (the operation) in front.
    pub(crate) fn into_error(self, what: &str) -> Error {
        let hint = match self.status() {
            Some(401 | 403) => {
                " (check the credentials: Application Default Credentials, or LARDER_GCS_ANONYMOUS=1 for an emulator)"
            }
            Some(404) => " (does the bucket exist?)",
            _ => "",
        };
        Error::Store {
            store: STORE.into(),
            message: format!("{what}: {self}{hint}"),
            temporary: self.is_temporary(),
            source: Some(Box::new(self)),
        }
    }
}

pub(crate) fn status_is_temporary(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status) && status != 501
}

/// An error of the official client (reads and small writes), classified.
pub(crate) fn sdk(what: &str, err: google_cloud_storage::Error) -> Error {
    let temporary = match err.http_status_code() {
        Some(s) => status_is_temporary(s),
        None => {
            err.is_timeout()
                || err.is_io()
                || err.is_connect()
                || err.is_transport()
                || err.is_exhausted()
        }
    };
    let hint = if err.is_authentication() || matches!(err.http_status_code(), Some(401 | 403)) {
        " (check the credentials: Application Default Credentials, or LARDER_GCS_ANONYMOUS=1 for an emulator)"
    } else {
        ""
    };
    Error::Store {
        store: STORE.into(),
        message: format!("{what}: {err}{hint}"),
        temporary,
        source: Some(Box::new(err)),
    }
}

/// A peer that sent nothing for `after`: temporary.
pub(crate) fn stalled(what: &str, after: std::time::Duration) -> Error {
    Error::Store {
        store: STORE.into(),
        message: format!("{what}: nothing received for {after:?}"),
        temporary: true,
        source: None,
    }
}

/// A bad store configuration: permanent, user-facing.
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(status_is_temporary(s), "{s}");
            let e = GcsError::Status {
                status: s,
                message: String::new(),
            };
            assert_eq!(e.into_error("x").kind(), larder_core::ErrorKind::Temporary);
        }
        for s in [400, 401, 403, 404, 412, 501] {
            assert!(!status_is_temporary(s), "{s}");
        }
    }
}

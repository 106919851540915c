//! How HTTP failures become larder's classified errors.

use larder_core::Error;
use reqwest::StatusCode;

pub(crate) const STORE: &str = "larder-http";

/// A transport error: connection failures and time-outs are temporary.
pub(crate) fn transport(what: &str, e: reqwest::Error) -> Error {
    let temporary = e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
    Error::Store {
        store: STORE.into(),
        message: format!("{what}: {e}"),
        temporary,
        source: Some(Box::new(e)),
    }
}

/// Whether a response status is worth retrying.
pub(crate) fn status_is_temporary(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// An error for a response that is not a success, with the server's message.
pub(crate) fn from_status(what: &str, status: StatusCode, message: &str) -> Error {
    let message = message.trim();
    match status {
        StatusCode::NOT_FOUND => Error::NotFound { what: what.into() },
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::LENGTH_REQUIRED => {
            Error::invalid(format!("{what}: {message}"))
        }
        StatusCode::NOT_IMPLEMENTED => Error::NotSupported {
            store: STORE.into(),
            operation: "this operation (server said 501)",
        },
        s => Error::Store {
            store: STORE.into(),
            message: format!("{what}: HTTP {s}: {message}"),
            temporary: status_is_temporary(s),
            source: None,
        },
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

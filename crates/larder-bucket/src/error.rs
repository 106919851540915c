//! How object-store backends turn service failures into larder's classified errors.
//!
//! Temporary (worth a retry): time-outs, connection failures, bodies cut short or stalled,
//! 408, 429 and 5xx but 501. Everything else is permanent, with the service's words in the
//! message so a wrong key or a missing bucket reads as such.

use std::time::Duration;

use larder_core::Error;

/// Whether an HTTP status from an object service is worth a retry.
pub fn status_is_temporary(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status) && status != 501
}

/// A classified error of the backend `store` (its crate name) while doing `what`.
pub fn store_error(
    store: &str,
    what: &str,
    message: impl std::fmt::Display,
    temporary: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> Error {
    Error::Store {
        store: store.into(),
        message: format!("{what}: {message}"),
        temporary,
        source,
    }
}

/// A failure while reading a response body: temporary (the object may be fine).
pub fn body(store: &str, what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    let message = err.to_string();
    store_error(store, what, message, true, Some(Box::new(err)))
}

/// A peer that sent nothing for `after`: temporary.
pub fn stalled(store: &str, what: &str, after: Duration) -> Error {
    store_error(
        store,
        what,
        format!("nothing received for {after:?}"),
        true,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(status_is_temporary(s), "{s}");
        }
        for s in [400, 403, 404, 412, 501] {
            assert!(!status_is_temporary(s), "{s}");
        }
    }

    #[test]
    fn stalls_are_temporary() {
        let e = stalled("larder-s3", "reading blob x", Duration::from_secs(2));
        assert!(e.is_temporary());
        assert!(
            e.to_string().contains("reading blob x: nothing received"),
            "{e}"
        );
    }
}

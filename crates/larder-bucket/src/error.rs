//! How object-store backends turn service failures into larder's classified errors, and retry
//! the temporary ones where their client does not ([`RequestError`], [`retrying`]).
//!
//! Temporary (worth a retry): time-outs, connection failures, bodies cut short or stalled,
//! 408, 429 and 5xx but 501. Everything else is permanent, with the service's words in the
//! message so a wrong key or a missing bucket reads as such.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use larder_core::{ByteStream, Error};

/// Whether an HTTP status from an object service is worth a retry.
pub fn status_is_temporary(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status) && status != 501
}

/// What a service's failure means, as a backend reads it from the service's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The object is not there: [`Error::NotFound`].
    NotFound,
    /// The store's configuration is wrong: [`Error::InvalidInput`].
    Config,
    /// The service cannot do this: permanent.
    Unsupported,
    /// The credentials were refused: permanent.
    Denied,
    /// Worth trying again.
    Temporary,
    /// Anything else.
    Permanent,
}

/// `err`, met by the backend `store` while doing `what`, as larder's error for `failure`; a
/// refused credential says what to check (`credentials`).
pub fn classify<E>(store: &str, what: &str, failure: Failure, credentials: &str, err: E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let hint = match failure {
        Failure::NotFound => {
            let what = format!("{what}: {err}");
            return Error::NotFound { what };
        }
        Failure::Config => return Error::invalid(format!("{what}: invalid configuration: {err}")),
        Failure::Unsupported => "the service does not support this: ".to_owned(),
        Failure::Denied => format!("permission denied (check {credentials}): "),
        Failure::Temporary | Failure::Permanent => String::new(),
    };
    let temporary = failure == Failure::Temporary;
    store_error(
        store,
        what,
        format!("{hint}{err}"),
        temporary,
        Some(Box::new(err)),
    )
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

/// A failed request to an object service over HTTP, before classification: what [`found`] and
/// [`retrying`] need to know of it.
pub trait RequestError: Sized {
    /// The status the service answered with, if it answered.
    fn status(&self) -> Option<u16>;
    /// Whether trying again may succeed.
    fn is_temporary(&self) -> bool;
    /// The failure of an attempt that had no answer within `after`.
    fn timed_out(after: Duration) -> Self;
    /// Classified, with `what` (the operation) in front.
    fn into_error(self, what: &str) -> Error;
}

/// `Ok(None)` for an object that is not there (404), the classified error for other failures.
///
/// # Errors
/// Any failure but a 404, classified.
pub fn found<T, E: RequestError>(got: Result<T, E>, what: &str) -> larder_core::Result<Option<T>> {
    found_by(got, E::status, |e| e.into_error(what))
}

/// [`found`] for a failure type read by functions: its `status`, and how to `classify` it.
///
/// # Errors
/// Any failure but a 404, classified.
pub fn found_by<T, E>(
    got: Result<T, E>,
    status: impl FnOnce(&E) -> Option<u16>,
    classify: impl FnOnce(E) -> Error,
) -> larder_core::Result<Option<T>> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// Run `attempt` until it succeeds, fails permanently, or `retries` retries are spent, each
/// attempt bounded by `timeout`, with exponential backoff (100 ms, doubling). For clients that
/// do not retry by themselves (S3's SDK and OpenDAL's `RetryLayer` do).
///
/// # Errors
/// The permanent failure, or the last temporary one.
pub async fn retrying<T, E, F, Fut>(retries: u32, timeout: Duration, attempt: F) -> Result<T, E>
where
    E: RequestError,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let (mut delay, mut left) = (Duration::from_millis(100), retries);
    loop {
        let result = tokio::time::timeout(timeout, attempt()).await;
        match result.unwrap_or_else(|_| Err(E::timed_out(timeout))) {
            Err(e) if e.is_temporary() && left > 0 => {
                left -= 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// [`Error::TooLarge`] for the object `key` of `size` bytes if that is over `limit`.
///
/// # Errors
/// When it is.
pub fn within(key: &str, size: u64, limit: u64) -> larder_core::Result<()> {
    match size > limit {
        true => Err(Error::TooLarge {
            what: key.to_owned(),
            size,
            limit,
        }),
        false => Ok(()),
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

/// A download's chunks as a [`ByteStream`]: each must arrive within `timeout` (else the stream
/// yields [`stalled`]), and a failed chunk is a [`body`] error. What a backend's
/// [`Bucket::read`](crate::Bucket::read) answers, its chunks bounded as the contract asks.
pub fn timed_chunks<E>(
    store: &'static str,
    what: String,
    timeout: Duration,
    chunks: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
) -> ByteStream
where
    E: std::error::Error + Send + Sync + 'static,
{
    let chunks = Box::pin(chunks);
    Box::pin(futures::stream::unfold(chunks, move |mut b| {
        let what = what.clone();
        async move {
            let item = match tokio::time::timeout(timeout, b.next()).await {
                Err(_) => Err(stalled(store, &what, timeout)),
                Ok(None) => return None,
                Ok(Some(chunk)) => chunk.map_err(|e| body(store, &what, e)),
            };
            Some((item, b))
        }
    }))
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

    #[tokio::test]
    async fn chunks_must_arrive_in_time() {
        let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"a"))]);
        let then_nothing = first.chain(futures::stream::pending());
        let t = Duration::from_millis(50);
        let mut s = timed_chunks("larder-x", "reading x".into(), t, then_nothing);
        assert_eq!(s.next().await.unwrap().unwrap(), Bytes::from_static(b"a"));
        let e = s.next().await.unwrap().unwrap_err();
        assert!(
            e.is_temporary() && e.to_string().contains("nothing received"),
            "{e}"
        );
    }

    /// A request failure that is its status.
    #[derive(Debug, PartialEq)]
    struct Status(u16);

    impl RequestError for Status {
        fn status(&self) -> Option<u16> {
            Some(self.0)
        }
        fn is_temporary(&self) -> bool {
            status_is_temporary(self.0)
        }
        fn timed_out(_: Duration) -> Self {
            Status(408)
        }
        fn into_error(self, what: &str) -> Error {
            store_error("larder-x", what, self.0, self.is_temporary(), None)
        }
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_and_missing_objects_found_missing() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let attempt = || async {
            match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Err(Status(503)),
                1 => futures::future::pending().await,
                _ => Ok(7),
            }
        };
        let got = retrying(2, Duration::from_millis(20), attempt).await;
        assert_eq!(got, Ok(7));
        let got = retrying(5, Duration::from_secs(1), || async {
            Err::<(), _>(Status(403))
        });
        assert_eq!(got.await, Err(Status(403)));
        assert!(matches!(found::<(), _>(Err(Status(404)), "x"), Ok(None)));
        let e = found::<(), _>(Err(Status(503)), "reading x").unwrap_err();
        assert!(
            e.is_temporary() && e.to_string().contains("reading x: 503"),
            "{e}"
        );
    }

    #[test]
    fn failures_are_classified() {
        let io = || std::io::Error::other("reset");
        let e = |f| classify("larder-x", "reading x", f, "the keys", io());
        assert!(matches!(e(Failure::NotFound), Error::NotFound { .. }));
        assert!(matches!(e(Failure::Config), Error::InvalidInput { .. }));
        let denied = e(Failure::Denied);
        let text = "reading x: permission denied (check the keys): reset";
        assert!(
            !denied.is_temporary() && denied.to_string().contains(text),
            "{denied}"
        );
        let unsupported = e(Failure::Unsupported).to_string();
        assert!(
            unsupported.contains("does not support this: reset"),
            "{unsupported}"
        );
        assert!(e(Failure::Temporary).is_temporary() && !e(Failure::Permanent).is_temporary());
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

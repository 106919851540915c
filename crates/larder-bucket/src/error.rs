//! How object-store backends turn service failures into larder's classified errors.
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

//! Verifying a blob's bytes as they stream in from a remote store.
//!
//! Every remote store hands out a blob as a stream of chunks that must hash to the blob's digest
//! (with the digest's own function, BLAKE3 or SHA-256) and add up to its size. [`verified_stream`] does the counting and hashing once for all of
//! them; a store supplies what differs: how a damaged blob is removed ([`VerifyHooks::on_corrupt`])
//! and how a failing body is judged ([`VerifyHooks::on_error`]).

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

use crate::digest::{Digest, DigestWriter};
use crate::error::{Error, Result};
use crate::store::ByteStream;

/// What a store does when a verified stream goes wrong.
pub struct VerifyHooks {
    /// Runs once when the bytes are wrong (too many, too few, another digest), before the
    /// [`Error::Corrupt`] is passed on: typically removes the blob so the next put heals it.
    pub on_corrupt: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
    /// Runs on the body's first error and returns the error to pass on (a store may find that
    /// the blob is damaged rather than the transfer, and say [`Error::Corrupt`]).
    pub on_error: Box<dyn FnOnce(Error) -> BoxFuture<'static, Error> + Send>,
}

impl VerifyHooks {
    /// Hooks that remove nothing and pass body errors on unchanged.
    pub fn none() -> VerifyHooks {
        VerifyHooks {
            on_corrupt: Box::new(|| Box::pin(async {})),
            on_error: Box::new(|e| Box::pin(async move { e })),
        }
    }
}

impl std::fmt::Debug for VerifyHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyHooks")
    }
}

struct State<S> {
    body: std::pin::Pin<Box<S>>,
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
    hooks: Option<VerifyHooks>,
}

impl<S: Stream<Item = Result<Bytes>>> State<S> {
    async fn corrupt(&mut self, reason: String) -> Error {
        if let Some(h) = self.hooks.take() {
            (h.on_corrupt)().await;
        }
        Error::corrupt(format!("blob {}", self.digest), reason)
    }

    /// All the blob's bytes have come: the body must end here and the digest match.
    async fn check_end(&mut self) -> Result<()> {
        loop {
            match self.body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(_)) => return Err(self.corrupt("longer than its size".into()).await),
                Some(Err(e)) => {
                    return Err(match self.hooks.take() {
                        Some(h) => (h.on_error)(e).await,
                        None => e,
                    });
                }
                None => break,
            }
        }
        if self.hasher.finish() != self.digest {
            return Err(self.corrupt("bytes do not match the digest".into()).await);
        }
        Ok(())
    }
}

/// Pass `body`'s chunks on while hashing them; end with [`Error::Corrupt`] if they exceed
/// `size`, fall short of it, or do not hash to `digest`. The chunk that completes `size` is
/// passed on only once the body has ended and the digest matched, so a consumer never gets
/// all of a wrong blob's bytes (a server streaming it with a `Content-Length` would otherwise
/// have sent a complete wrong body before the error). The stream ends after its first error.
pub fn verified_stream<S>(body: S, digest: Digest, size: u64, hooks: VerifyHooks) -> ByteStream
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let state = State {
        body: Box::pin(body),
        hasher: DigestWriter::for_digest(&digest),
        digest,
        size,
        hooks: Some(hooks),
    };
    Box::pin(futures::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        match st.body.next().await {
            Some(Ok(chunk)) => {
                st.hasher.update(&chunk);
                if st.hasher.len() > st.size {
                    let e = st.corrupt("longer than its size".into()).await;
                    return Some((Err(e), None));
                }
                if st.hasher.len() == st.size && !chunk.is_empty() {
                    return match st.check_end().await {
                        Ok(()) => Some((Ok(chunk), None)),
                        Err(e) => Some((Err(e), None)),
                    };
                }
                Some((Ok(chunk), Some(st)))
            }
            Some(Err(e)) => {
                let e = match st.hooks.take() {
                    Some(h) => (h.on_error)(e).await,
                    None => e,
                };
                Some((Err(e), None))
            }
            None => {
                let reason = if st.hasher.len() != st.size {
                    format!("{} bytes, expected {}", st.hasher.len(), st.size)
                } else if st.hasher.finish() != st.digest {
                    "bytes do not match the digest".into()
                } else {
                    return None;
                };
                let e = st.corrupt(reason).await;
                Some((Err(e), None))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::TryStreamExt;

    use super::*;
    use crate::error::ErrorKind;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn counting() -> (VerifyHooks, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = Arc::clone(&n);
        let hooks = VerifyHooks {
            on_corrupt: Box::new(move || {
                n2.fetch_add(1, Ordering::SeqCst);
                Box::pin(async {})
            }),
            on_error: Box::new(|e| Box::pin(async move { e })),
        };
        (hooks, n)
    }

    async fn run(s: ByteStream) -> Result<Vec<u8>> {
        let parts: Vec<Bytes> = s.try_collect().await?;
        Ok(parts.concat())
    }

    #[tokio::test]
    async fn good_bytes_pass_and_bad_ones_end_corrupt_once() {
        let d = Digest::of(b"hello world");
        let (hooks, removed) = counting();
        let got = run(verified_stream(
            chunks(&[b"hello ", b"world"]),
            d,
            11,
            hooks,
        ))
        .await;
        assert_eq!(got.unwrap(), b"hello world");
        assert_eq!(removed.load(Ordering::SeqCst), 0);
        for (parts, size) in [
            (&[b"hello ".as_slice(), b"w0rld"][..], 11),
            (&[b"hello ".as_slice(), b"world", b"!"][..], 11),
            (&[b"hello ".as_slice()][..], 11),
        ] {
            let (hooks, removed) = counting();
            let err = run(verified_stream(chunks(parts), d, size, hooks))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert_eq!(removed.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn a_wrong_blob_never_passes_all_its_bytes_on() {
        let d = Digest::of(b"hello world");
        for parts in [
            &[b"hello ".as_slice(), b"w0rld"][..],
            &[b"hello world".as_slice()][..],
            &[b"hello ".as_slice(), b"world", b"!"][..],
        ] {
            let items: Vec<Result<Bytes>> =
                verified_stream(chunks(parts), d, 11, VerifyHooks::none())
                    .collect()
                    .await;
            let passed: usize = items.iter().flatten().map(Bytes::len).sum();
            if parts.concat() == b"hello world" {
                assert_eq!(passed, 11);
                continue;
            }
            assert!(passed < 11, "{passed} bytes of a wrong blob passed on");
            let last = items.last().expect("an item");
            assert_eq!(last.as_ref().unwrap_err().kind(), ErrorKind::Corrupt);
        }
    }

    #[tokio::test]
    async fn a_body_error_goes_through_on_error_and_ends_the_stream() {
        let d = Digest::of(b"ab");
        let body = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(Error::invalid("cut")),
            Ok(Bytes::from_static(b"b")),
        ]);
        let hooks = VerifyHooks {
            on_corrupt: Box::new(|| Box::pin(async {})),
            on_error: Box::new(|_| {
                Box::pin(async { Error::corrupt("blob", "the server dropped it") })
            }),
        };
        let items: Vec<Result<Bytes>> = verified_stream(body, d, 2, hooks).collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].as_ref().unwrap_err().kind(), ErrorKind::Corrupt);
        let none = VerifyHooks::none();
        let err = run(verified_stream(chunks(&[b"x"]), d, 2, none))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[tokio::test]
    async fn sha256_blobs_verify_with_sha256() {
        let d = crate::digest::HashFn::Sha256.digest(b"hello world");
        let got = run(verified_stream(
            chunks(&[b"hello ", b"world"]),
            d,
            11,
            VerifyHooks::none(),
        ))
        .await;
        assert_eq!(got.unwrap(), b"hello world");
        // The BLAKE3 digest of the same bytes, relabelled SHA-256, does not verify.
        let wrong = Digest::sha256(*Digest::of(b"hello world").as_bytes());
        let err = run(verified_stream(
            chunks(&[b"hello world"]),
            wrong,
            11,
            VerifyHooks::none(),
        ))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
}

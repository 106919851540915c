//! Verifying uploads before anything is published, and cutting a stream into parts.
//!
//! A blob up to the part size is buffered and checked ([`buffer_verified`]) before its one
//! request is sent. A larger blob streams through [`verifying`], which passes the caller's
//! chunks on while hashing them and yields an error instead of the end of the stream (or
//! instead of the chunk that overflows) when the bytes do not match: a backend that publishes
//! only on a clean end (completing a multipart upload, closing a writer, writing a manifest
//! last) then publishes nothing. [`parts`] cuts a stream into fixed-size parts for backends
//! that upload part by part; [`multipart_related`] frames one with its metadata for services
//! that take both in one request.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use larder_core::digest::DigestWriter;
use larder_core::{ByteStream, Digest, Error, Result};

/// The stream did not match what was announced: its length if that differs, else its digest.
fn mismatch(digest: &Digest, got: u64, size: u64) -> Error {
    if got != size {
        Error::invalid(format!(
            "blob {digest}: the stream had {got} bytes, {size} were announced"
        ))
    } else {
        Error::invalid(format!(
            "blob {digest}: the bytes do not hash to this digest"
        ))
    }
}

/// Read a whole (small) blob into memory, checking its length and digest.
///
/// # Errors
/// The payload's own error, or [`Error::InvalidInput`] when the bytes do not match.
pub async fn buffer_verified(digest: &Digest, size: u64, mut payload: ByteStream) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(size.min(64 << 20) as usize);
    let mut hasher = DigestWriter::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        if hasher.len() > size {
            return Err(mismatch(digest, hasher.len(), size));
        }
        buf.extend_from_slice(&chunk);
    }
    if hasher.len() != size || hasher.finish() != *digest {
        return Err(mismatch(digest, hasher.len(), size));
    }
    Ok(buf.freeze())
}

/// Where [`verifying`] leaves the caller's fault (wrong bytes, or the payload's own error), so
/// it is reported as such rather than as whatever the backend made of the failed body.
#[derive(Debug, Clone, Default)]
pub struct Fault(Arc<Mutex<Option<Error>>>);

impl Fault {
    /// The fault, if the stream had one.
    pub fn take(&self) -> Option<Error> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Keep `e` for the caller; the backend gets a copy of its message.
    fn set(&self, e: Error) -> Error {
        let shown = Error::invalid(e.to_string());
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
        shown
    }
}

struct Hashing {
    payload: ByteStream,
    hasher: DigestWriter,
    digest: Digest,
    size: u64,
    fault: Fault,
    done: bool,
}

/// `payload`'s chunks, hashed as they pass; an error instead of the end (or of an overflowing
/// chunk) when they do not add up to `size` bytes hashing to `digest`. The [`Fault`] keeps
/// that error (or the payload's own) for the caller.
pub fn verifying(digest: Digest, size: u64, payload: ByteStream) -> (ByteStream, Fault) {
    let fault = Fault::default();
    let state = Hashing {
        payload,
        hasher: DigestWriter::new(),
        digest,
        size,
        fault: fault.clone(),
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let failed = |st: &mut Hashing, e: Error| {
            st.done = true;
            Some((Err(st.fault.set(e)), ()))
        };
        let item = match st.payload.next().await {
            Some(Ok(chunk)) => {
                st.hasher.update(&chunk);
                let len = st.hasher.len();
                // The last chunk is checked before it is passed on, so a backend that sends
                // it and then finishes never finishes wrong bytes.
                if len > st.size || len == st.size && st.hasher.finish() != st.digest {
                    let e = mismatch(&st.digest, len, st.size);
                    failed(&mut st, e)
                } else {
                    Some((Ok(chunk), ()))
                }
            }
            Some(Err(e)) => failed(&mut st, e),
            None => {
                st.done = true;
                if st.hasher.len() != st.size {
                    let e = mismatch(&st.digest, st.hasher.len(), st.size);
                    failed(&mut st, e)
                } else {
                    None
                }
            }
        };
        item.map(|(r, ())| (r, st))
    });
    (Box::pin(stream), fault)
}

/// `body` cut into parts of `part_size` bytes (the last may be shorter). Memory: one part.
pub fn parts(body: ByteStream, part_size: usize) -> impl Stream<Item = Result<Bytes>> + Send {
    let part_size = part_size.max(1);
    futures::stream::unfold(
        (body, BytesMut::with_capacity(part_size), false),
        move |(mut body, mut buf, mut ended)| async move {
            loop {
                if buf.len() >= part_size {
                    let part = buf.split_to(part_size).freeze();
                    return Some((Ok(part), (body, buf, ended)));
                }
                if ended {
                    if buf.is_empty() {
                        return None;
                    }
                    let part = std::mem::take(&mut buf).freeze();
                    return Some((Ok(part), (body, buf, ended)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (body, BytesMut::new(), true))),
                    None => ended = true,
                }
            }
        },
    )
}

/// `body` cut into parts of `part_size`, each handed to `send(n, part)` (`n` from 0) with
/// `in_flight` sends at a time (memory: that many parts, and one filling); their answers, in
/// order. Stops at the first error, the body's or a send's.
///
/// # Errors
/// That first error.
pub async fn send_parts<T, F, Fut>(
    body: ByteStream,
    part_size: usize,
    in_flight: usize,
    mut send: F,
) -> Result<Vec<T>>
where
    F: FnMut(u64, Bytes) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let sends = parts(body, part_size).enumerate().map(|(n, part)| {
        let sent = part.map(|part| send(n as u64, part));
        async move { sent?.await }
    });
    sends.buffered(in_flight.max(1)).try_collect().await
}

/// A `multipart/related` body (RFC 2387): a JSON part (an object's resource: its name and
/// metadata), then the `size` bytes of `data`, between boundary lines. Returns the body, its
/// content type and its length. A `data` that fails cuts the body short, so the service stores
/// nothing.
pub fn multipart_related(json: &str, (size, data): (u64, ByteStream)) -> (ByteStream, String, u64) {
    // Unique enough that no blob holds this line.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let boundary = format!(
        "larder-{:032x}",
        nanos ^ (u128::from(std::process::id()) << 64)
    );
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let len = head.len() as u64 + size + tail.len() as u64;
    let body = futures::stream::iter([Ok(Bytes::from(head))])
        .chain(data)
        .chain(futures::stream::iter([Ok(Bytes::from(tail))]));
    let content_type = format!("multipart/related; boundary={boundary}");
    (Box::pin(body), content_type, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    #[tokio::test]
    async fn good_bytes_pass_and_bad_ones_fail_before_the_end() {
        let d = Digest::of(b"hello world");
        let (s, fault) = verifying(d, 11, stream(vec![b"hello ", b"world"]));
        let got: Vec<Bytes> = s.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello world");
        assert!(fault.take().is_none());

        let (s, fault) = verifying(d, 11, stream(vec![b"hello ", b"earth"]));
        let items: Vec<Result<Bytes>> = s.collect().await;
        assert_eq!(items.len(), 2, "the wrong last chunk is never passed on");
        assert!(items[1].is_err());
        let e = fault.take().expect("fault kept");
        assert!(e.to_string().contains("do not hash"), "{e}");

        let (s, fault) = verifying(d, 11, stream(vec![b"hello"]));
        assert!(s.try_collect::<Vec<Bytes>>().await.is_err());
        assert!(fault.take().unwrap().to_string().contains("5 bytes"));
    }

    #[tokio::test]
    async fn small_blobs_buffer_and_check() {
        let d = Digest::of(b"abc");
        assert_eq!(
            buffer_verified(&d, 3, stream(vec![b"a", b"bc"]))
                .await
                .unwrap(),
            Bytes::from_static(b"abc")
        );
        assert!(buffer_verified(&d, 3, stream(vec![b"abd"])).await.is_err());
        assert!(buffer_verified(&d, 3, stream(vec![b"abcd"])).await.is_err());
    }

    #[tokio::test]
    async fn multipart_related_bodies_frame_the_data() {
        let (body, content_type, len) = multipart_related("{}", (3, stream(vec![b"a", b"bc"])));
        let body: Vec<Bytes> = body.try_collect().await.unwrap();
        let body = String::from_utf8(body.concat()).unwrap();
        let boundary = content_type
            .strip_prefix("multipart/related; boundary=")
            .unwrap();
        assert_eq!(body.len() as u64, len);
        assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body}");
        assert!(body.contains("\r\n\r\n{}\r\n") && body.contains("\r\n\r\nabc\r\n"));
        assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{body}");
    }

    #[tokio::test]
    async fn parts_are_sent_in_order_and_the_first_error_stops() {
        let body = stream(vec![b"abc", b"defgh", b"ij"]);
        let sent = send_parts(body, 4, 2, |n, part| async move { Ok((n, part)) });
        let want = [(0, &b"abcd"[..]), (1, b"efgh"), (2, b"ij")];
        assert_eq!(
            sent.await.unwrap(),
            want.map(|(n, p)| (n, Bytes::from_static(p)))
        );
        let body = stream(vec![b"abcdefgh"]);
        let failing = |n, _| async move {
            if n == 1 {
                Err(Error::invalid("no"))
            } else {
                Ok(n)
            }
        };
        assert!(send_parts(body, 4, 1, failing).await.is_err());
    }

    #[tokio::test]
    async fn streams_are_cut_into_parts() {
        let got: Vec<Bytes> = parts(stream(vec![b"abc", b"defgh", b"ij"]), 4)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got, vec![&b"abcd"[..], b"efgh", b"ij"]);
        let none: Vec<Bytes> = parts(stream(vec![]), 4).try_collect().await.unwrap();
        assert!(none.is_empty());
    }
}

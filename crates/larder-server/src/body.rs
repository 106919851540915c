//! Request bodies: size bounds, streaming into the store, and spooling bodies whose digest is
//! not known up front.
//!
//! [`Store::put_blob`](larder_core::Store::put_blob) needs the blob's BLAKE3 before the bytes.
//! The native protocol names it in the URL; ccache and Bazel do not, so their bodies are
//! spooled first: kept in memory up to [`MEMORY_SPOOL_BYTES`], else written to a temporary file
//! in the server's directory while being hashed, then handed to the store as a
//! [`VerifiedFile`]: the filesystem store renames it into place (its bytes were hashed on the
//! way in), other stores read it as a stream. Memory stays bounded either way.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use larder_core::digest::DigestWriter;
use larder_core::{ByteStream, Digest, Error, PutOutcome, Store, VerifiedFile};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult};
use crate::metrics::{Limit, Metrics};

/// Disk space reserved up front for spooled uploads in flight, bounded in total
/// ([`Limits::max_reserved_bytes`](crate::Limits::max_reserved_bytes)): a client declaring a
/// huge `Content-Length` cannot make the server reserve it, and what an upload reserved is
/// given back when the upload ends, however it ends (a stalled one fails on the minimum
/// upload rate).
#[derive(Debug)]
pub(crate) struct Reservations {
    held: AtomicU64,
    max: u64,
    metrics: Arc<Metrics>,
}

impl Reservations {
    pub(crate) fn new(max: u64, metrics: Arc<Metrics>) -> Arc<Reservations> {
        Arc::new(Reservations {
            held: AtomicU64::new(0),
            max,
            metrics,
        })
    }

    /// Bytes reserved by uploads in flight.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Count `len` bytes as reserved, if that stays within the bound.
    fn take(self: &Arc<Self>, len: u64) -> Option<Reservation> {
        let granted = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|total| *total <= self.max)
            })
            .is_ok();
        if granted {
            Some(Reservation {
                len,
                owner: Arc::clone(self),
            })
        } else {
            self.metrics.tripped(Limit::Reservation);
            tracing::debug!(
                "larder-server: reserving {len} bytes would pass --max-reserved ({} bytes, {} held): receiving without a reservation",
                self.max,
                self.held()
            );
            None
        }
    }
}

/// Bytes counted in [`Reservations`] until dropped.
#[derive(Debug)]
struct Reservation {
    len: u64,
    owner: Arc<Reservations>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.owner.held.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// Bodies up to this size are spooled in memory; larger ones go to a temporary file.
pub(crate) const MEMORY_SPOOL_BYTES: usize = 1 << 20;

/// The body length a request declares (`Content-Length`), if any.
pub(crate) fn content_length(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    header_u64(headers, "content-length")
}

/// A header holding a decimal `u64`, if present.
pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad(format!("header {name} is not a byte count")))
}

/// Refuse a declared size over the bound before reading anything.
pub(crate) fn check_size(what: &str, size: Option<u64>, limit: Option<u64>) -> ApiResult<()> {
    match (size, limit) {
        (Some(size), Some(limit)) if size > limit => Err(ApiError::TooLarge {
            what: format!("{what} of {size} bytes"),
            limit,
        }),
        _ => Ok(()),
    }
}

/// How much of an unwanted request body is read and discarded before answering an error, and
/// for how long: enough for the client to finish sending a modest body and read the answer on
/// a healthy connection (as nginx's lingering close does); larger bodies get the answer and a
/// closed connection.
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The body as a [`ByteStream`].
pub(crate) fn raw_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map(|item| {
        item.map_err(|e| Error::Store {
            store: "larder-server".into(),
            message: format!("reading the request body: {e}"),
            temporary: true,
            source: None,
        })
    }))
}

/// `stream`, failing with [`Error::TooLarge`] once it passes `limit`.
pub(crate) fn limited(stream: ByteStream, limit: Option<u64>) -> ByteStream {
    let mut seen = 0u64;
    Box::pin(stream.map(move |item| {
        let chunk = item?;
        seen += chunk.len() as u64;
        if let Some(limit) = limit
            && seen > limit
        {
            return Err(Error::TooLarge {
                what: "request body".into(),
                size: seen,
                limit,
            });
        }
        Ok(chunk)
    }))
}

/// Run a handler `f` on the request body as a stream; afterwards whatever it left unread is
/// read and discarded (all of it after a success, as when a blob already exists; a bounded
/// amount after an error), so that the client can read the answer.
pub(crate) async fn with_body<F, Fut>(body: Body, f: F) -> ApiResult<Response>
where
    F: FnOnce(ByteStream) -> Fut,
    Fut: Future<Output = ApiResult<Response>>,
{
    let (stream, rest) = Reclaimable::new(raw_stream(body));
    let result = f(stream).await;
    match &result {
        Ok(_) => rest.drain(None).await,
        Err(_) => {
            let _ = tokio::time::timeout(LINGER_TIME, rest.drain(Some(LINGER_BYTES))).await;
        }
    }
    result
}

/// A stream a handler reads from, whose unread rest can be taken back afterwards: a store that
/// finds a blob already present returns without reading it, and an error is answered before
/// the body is read; the rest is then drained (see [`with_body`]).
struct Reclaimable(Arc<Mutex<Option<ByteStream>>>);

impl Reclaimable {
    /// Wrap `stream`; the second value takes the rest back.
    fn new(stream: ByteStream) -> (ByteStream, Reclaimable) {
        let shared = Arc::new(Mutex::new(Some(stream)));
        let reader = Reclaimable(Arc::clone(&shared));
        (Box::pin(reader), Reclaimable(shared))
    }

    /// Read and discard what was left unread, up to `bound` bytes.
    async fn drain(self, bound: Option<u64>) {
        let rest = self.0.lock().ok().and_then(|mut g| g.take());
        if let Some(mut rest) = rest {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = rest.next().await {
                seen += chunk.len() as u64;
                if bound.is_some_and(|b| seen > b) {
                    break;
                }
            }
        }
    }
}

impl futures::Stream for Reclaimable {
    type Item = larder_core::Result<Bytes>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(s) => s.as_mut().poll_next(cx),
                None => std::task::Poll::Ready(None),
            },
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}

/// Where a spooled body is.
#[derive(Debug)]
enum Spool {
    Memory(Bytes),
    /// A temporary file, with the space reserved for it (if any).
    File(tempfile::TempPath, Option<Reservation>),
}

/// A request body read to its end, with its digests.
#[derive(Debug)]
pub(crate) struct Spooled {
    spool: Spool,
    /// Its length.
    pub(crate) size: u64,
    /// Its BLAKE3.
    pub(crate) digest: Digest,
    /// Its SHA-256, when asked for.
    pub(crate) sha256: Option<[u8; 32]>,
}

impl Spooled {
    /// The bytes, when spooled in memory and no longer than `max`.
    pub(crate) fn small_bytes(&self, max: u64) -> Option<Bytes> {
        match &self.spool {
            Spool::Memory(b) if b.len() as u64 <= max => Some(b.clone()),
            _ => None,
        }
    }

    /// Store the bytes in `store` as the blob `digest` (its BLAKE3 [`Spooled::digest`], or its
    /// SHA-256 where that was checked). A file spool is handed over as a
    /// [`VerifiedFile`]: a store with local files takes it as it is (its bytes were hashed as
    /// they arrived), others read it as a stream. The temporary file, if still there, is
    /// removed afterwards.
    pub(crate) async fn store_as(
        self,
        store: &dyn Store,
        digest: &Digest,
    ) -> larder_core::Result<PutOutcome> {
        match self.spool {
            Spool::Memory(b) => {
                let stream: ByteStream = Box::pin(futures::stream::once(async move { Ok(b) }));
                store.put_blob(digest, self.size, stream).await
            }
            Spool::File(path, reservation) => {
                let file = VerifiedFile::new(path.to_path_buf(), self.size);
                let outcome = store.put_blob_file(digest, file).await;
                drop(path);
                drop(reservation);
                outcome
            }
        }
    }
}

/// Read `body` to its end, hashing it (BLAKE3, and SHA-256 if `sha256`), in memory when small
/// and in a temporary file under `tmp_dir` otherwise. Over `limit` is [`ApiError::TooLarge`].
/// A file spool for a body of `expected` bytes reserves its space up front (`fallocate`), so
/// that a full disk is found before the body is read.
pub(crate) async fn spool(
    body: ByteStream,
    limit: Option<u64>,
    sha256: bool,
    tmp_dir: &Path,
    expected: Option<(u64, &Arc<Reservations>)>,
) -> ApiResult<Spooled> {
    let mut stream = limited(body, limit);
    let mut spooler = Spooler::new(sha256, tmp_dir, expected);
    while let Some(chunk) = stream.try_next().await.map_err(body_error)? {
        spooler.push(&chunk).await?;
    }
    spooler.finish().await
}

/// A body being spooled chunk by chunk (see [`spool`]), for bodies that do not come as a
/// [`ByteStream`] (a multipart field).
pub(crate) struct Spooler<'a> {
    tmp_dir: &'a Path,
    expected: Option<(u64, &'a Arc<Reservations>)>,
    reservation: Option<Reservation>,
    blake: DigestWriter,
    sha: Option<sha2::Sha256>,
    mem: BytesMut,
    file: Option<(tempfile::TempPath, tokio::fs::File)>,
    size: u64,
}

impl<'a> Spooler<'a> {
    /// A spooler writing into `tmp_dir`; with `expected`, a file spool reserves the declared
    /// length from the reservations.
    pub(crate) fn new(
        sha256: bool,
        tmp_dir: &'a Path,
        expected: Option<(u64, &'a Arc<Reservations>)>,
    ) -> Self {
        Spooler {
            tmp_dir,
            expected,
            reservation: None,
            blake: DigestWriter::new(),
            sha: sha256.then(sha2::Sha256::new),
            mem: BytesMut::new(),
            file: None,
            size: 0,
        }
    }

    /// Bytes pushed so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) async fn push(&mut self, chunk: &[u8]) -> ApiResult<()> {
        self.blake.update(chunk);
        if let Some(sha) = self.sha.as_mut() {
            sha.update(chunk);
        }
        self.size += chunk.len() as u64;
        if self.file.is_none() && self.mem.len() + chunk.len() > MEMORY_SPOOL_BYTES {
            let tmp = tempfile::NamedTempFile::new_in(self.tmp_dir).map_err(|e| {
                ApiError::Store(Error::io(
                    format!("creating a spool file in {}", self.tmp_dir.display()),
                    e,
                ))
            })?;
            let (std_file, path) = tmp.into_parts();
            if let Some((len, reservations)) = self.expected.filter(|(len, _)| *len > self.size)
                && let Some(granted) = reservations.take(len)
            {
                reserve(&std_file, len).map_err(spool_io)?;
                self.reservation = Some(granted);
            }
            let mut f = tokio::fs::File::from_std(std_file);
            f.write_all(&self.mem).await.map_err(spool_io)?;
            self.mem = BytesMut::new();
            self.file = Some((path, f));
        }
        match self.file.as_mut() {
            Some((_, f)) => f.write_all(chunk).await.map_err(spool_io)?,
            None => self.mem.extend_from_slice(chunk),
        }
        Ok(())
    }

    pub(crate) async fn finish(self) -> ApiResult<Spooled> {
        let spool = match self.file {
            Some((path, mut f)) => {
                f.flush().await.map_err(spool_io)?;
                Spool::File(path, self.reservation)
            }
            None => Spool::Memory(self.mem.freeze()),
        };
        Ok(Spooled {
            spool,
            size: self.size,
            digest: self.blake.finish(),
            sha256: self.sha.map(|s| s.finalize().into()),
        })
    }
}

/// Reserve `len` bytes for `file` (it stays empty to readers: the size is not changed).
fn reserve(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: fallocate(2) on a file descriptor we own, no pointers involved.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // Filesystems without fallocate: nothing reserved, the write finds out.
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(err),
    }
}

fn spool_io(e: std::io::Error) -> ApiError {
    ApiError::Store(Error::io("writing a spool file", e))
}

fn body_error(e: Error) -> ApiError {
    match e {
        Error::TooLarge { limit, size, .. } => ApiError::TooLarge {
            what: format!("request body of at least {size} bytes"),
            limit,
        },
        other => ApiError::Body(other.to_string()),
    }
}

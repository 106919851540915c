//! The accept loop: HTTP/1.1 and HTTP/2 on one listener, with every connection bounded.
//!
//! Each accepted connection is served by hyper-util's `auto` builder, which reads the first
//! bytes and speaks HTTP/2 to a client that opens with its preface (h2c with prior knowledge on
//! the plain port, ALPN `h2` under TLS) and HTTP/1.1 to the others, so that gRPC and the HTTP
//! protocols share the port. What a client can hold is bounded (see [`Limits`]):
//! - connections: at most `max_connections` at once (lowered to what the open-files limit
//!   allows); one more is answered `503` with `Connection: close` and closed, counted, and
//!   logged (once a second at most);
//! - time: a connection must send its first request's headers within `header_timeout`, and an
//!   HTTP/1.1 connection each later request's headers within `header_timeout` of the end of the
//!   previous response; with no request in flight and no traffic for `idle_timeout` it is
//!   closed; a response the client stops reading for
//!   `idle_timeout` ends its connection; a request body slower than `min_upload_rate` fails;
//! - shutdown: once the stop signal comes the listener is closed, connections with no request
//!   in flight (idle, or a request head still incomplete) are closed, requests in flight may
//!   finish for `shutdown_timeout`, then what is left is cut.
//!
//! Every connection runtime ([`crate::runtimes`]) accepts on the listening socket itself and
//! serves what it accepts: a new connection is read and answered by the thread the kernel woke
//! for it, with no hand-over from an acceptor thread (a small request on a new connection, as
//! ccache makes one per compile, costs one thread wake-up, as in an nginx worker). The limit's
//! semaphore and the drain signal are shared by all of them, so the bounds above are the
//! server's, not a runtime's. The connection runtimes stop once every connection is done.
//!
//! The watchdog that enforces the times is a timer in each connection's own task, reading the
//! connection's [`Activity`]: no thread and no extra task per connection, and no timer armed
//! per request (hyper's own header time-out, off here, arms and drops one for every request
//! head, a tenth of the server's CPU time for small keep-alive GETs). The times are kept to
//! within a quarter of the shorter one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::conn::{Activity, Conn, InFlight};
use crate::error::ServerError;
use crate::metrics::{Limit, Metrics};
use crate::runtimes::ConnRuntimes;

/// The answer to a connection over the limit.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n\r\ntoo many connections; retry soon\n";
/// Refusals being written at once; past this, connections over the limit are closed unanswered.
const MAX_REFUSING: usize = 16;
/// File descriptors kept for the store, the index and spool files when the connection limit is
/// derived from the open-files limit.
const RESERVED_FDS: u64 = 64;

/// What every accept loop and connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    /// One permit per open connection, [`Shared::max`] in all.
    slots: Arc<Semaphore>,
    max: usize,
    /// Refusals being written.
    refusing: Arc<AtomicUsize>,
    /// When a refusal was last logged, so that it is logged once a second at most.
    last_warning: Mutex<Option<Instant>>,
}

/// Serve `router` on `listener` (over TLS when `tls` is set) until `shutdown`, then stop as
/// the module docs say.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let max = connection_limit(limits.max_connections);
    let runtimes = ConnRuntimes::start(limits.connection_threads, limits.shutdown_timeout)
        .map_err(ServerError::Serve)?;
    let deadline = limits.shutdown_timeout;
    let shared = Arc::new(Shared {
        builder: builder(),
        router,
        metrics: Arc::clone(&metrics),
        tls: tls.map(TlsAcceptor::from),
        limits,
        slots: Arc::new(Semaphore::new(max)),
        max,
        refusing: Arc::new(AtomicUsize::new(0)),
        last_warning: Mutex::new(None),
    });
    // Taken off this runtime's reactor: each connection runtime registers its own descriptor
    // of the socket with its own.
    let listener = listener.into_std().map_err(ServerError::Serve)?;
    let (draining, drain_rx) = watch::channel(false);
    let mut loops = Vec::new();
    for handle in runtimes.handles() {
        let listener = listener.try_clone().map_err(ServerError::Serve)?;
        loops.push(handle.spawn(accept_loop(listener, Arc::clone(&shared), drain_rx.clone())));
    }
    // The socket closes, and the kernel refuses new connections, once every loop has dropped
    // its descriptor.
    drop(listener);
    shutdown.await;
    let _ = draining.send(true);
    let mut cut = 0;
    for accepting in loops {
        match accepting.await {
            Ok(n) => cut += n,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => tracing::warn!("larder-server: an accept loop ended: {e}"),
        }
    }
    if cut > 0 {
        tracing::warn!(
            "larder-server: {cut} connections still busy {deadline:?} after the stop signal (--shutdown-timeout): cut them"
        );
    }
    runtimes.stop().await;
    Ok(())
}

/// One connection runtime's accept loop: accept on `listener` and serve each connection on
/// this runtime until the drain signal, then wait for this runtime's connections as the module
/// docs say. Returns how many were cut at the deadline.
///
/// Every runtime waits on the same socket, so a new connection wakes the runtimes that are
/// waiting and is taken by the first to call `accept` (the others find nothing); a runtime
/// busy serving does not compete.
async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) -> usize {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            // The other runtimes' loops still accept.
            tracing::warn!("larder-server: listening on a connection runtime: {e}");
            return 0;
        }
    };
    let mut tasks = JoinSet::new();
    loop {
        if *drain.borrow() {
            break;
        }
        let (tcp, peer) = tokio::select! {
            biased;
            changed = drain.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(permit) => {
                let shared = Arc::clone(&shared);
                let drain = drain.clone();
                tasks.spawn(async move {
                    shared.metrics.connection(true);
                    connection(tcp, peer, &shared, drain).await;
                    shared.metrics.connection(false);
                    drop(permit);
                });
            }
            Err(_) => {
                shared.metrics.tripped(Limit::Connections);
                let warn = match shared.last_warning.lock() {
                    Ok(mut last) if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) => {
                        *last = Some(Instant::now());
                        true
                    }
                    _ => false,
                };
                if warn {
                    tracing::warn!(
                        "larder-server: {} connections open (--max-connections): refusing {peer} with 503",
                        shared.max
                    );
                }
                refuse(tcp, &shared.refusing);
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(shared.limits.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    let left = tasks.len();
    for _ in 0..left {
        shared.metrics.tripped(Limit::ShutdownCut);
    }
    tasks.shutdown().await;
    left
}

/// The largest HTTP/2 frame a client may send. 64 KiB rather than the protocol's 16 KiB: an
/// upload (ByteStream Write) then arrives in a quarter of the frames and takes about a quarter
/// of the socket reads (and of the prompt ACKs, see [`crate::conn`]); a frame still holds up
/// the connection's other streams for no more than 64 KiB.
const H2_MAX_FRAME: u32 = 64 << 10;

/// The connection builder: both protocols, no HTTP/1.1 header time-out in hyper (the watchdog
/// keeps it, see the module docs), bounded HTTP/2 streams and header lists, and HTTP/2 frames
/// of up to [`H2_MAX_FRAME`] from clients.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 << 10)
        .max_frame_size(H2_MAX_FRAME);
    builder
}

/// `wanted` connections, lowered so that connections cannot use up the open-files limit.
fn connection_limit(wanted: usize) -> usize {
    let wanted = wanted.max(1);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return wanted;
    }
    let soft = lim.rlim_cur;
    // Refusals being written hold descriptors too.
    let reserved = RESERVED_FDS + MAX_REFUSING as u64;
    let room = if soft > 2 * reserved {
        soft - reserved
    } else {
        (soft / 2).max(1)
    };
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::info!(
            "larder-server: at most {room} connections at once (the open-files limit is {soft}; --max-connections asked for {wanted})"
        );
        room
    } else {
        wanted
    }
}

/// Answer a connection over the limit with a 503 and close it, without letting refusals pile
/// up: their writes and the wait for the client to close are bounded in number and time.
fn refuse(mut tcp: TcpStream, refusing: &Arc<AtomicUsize>) {
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = Arc::clone(refusing);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            if tcp.write_all(REFUSAL).await.is_err() {
                return;
            }
            let _ = tcp.shutdown().await;
            // Read what the client sent until it closes, so that closing does not reset the
            // connection before the client has read the answer.
            let mut sink = [0u8; 4096];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Serve one accepted connection: TLS handshake (bounded by the header time-out) if
/// configured, then HTTP.
async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    shared: &Shared,
    drain: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    // Below rustls, so that reading TLS records re-arms prompt ACKs as plain reads do.
    let conn = Conn::new(tcp, Arc::clone(&activity));
    match &shared.tls {
        None => serve_io(conn, peer, shared, activity, drain).await,
        Some(acceptor) => {
            let handshake = acceptor.accept(conn);
            match tokio::time::timeout(shared.limits.header_timeout, handshake).await {
                Ok(Ok(tls)) => serve_io(tls, peer, shared, activity, drain).await,
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => {
                    shared.metrics.tripped(Limit::HeaderTimeout);
                    tracing::debug!("TLS handshake with {peer} timed out");
                }
            }
        }
    }
}

/// Serve HTTP on `io` until the client closes, a limit ends the connection, or shutdown.
async fn serve_io<I>(
    io: I,
    peer: std::net::SocketAddr,
    shared: &Shared,
    activity: Arc<Activity>,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.limits;
    let service = RequestService {
        inner: TowerToHyperService::new(shared.router.clone()),
        activity: Arc::clone(&activity),
        min_rate: limits.min_upload_rate,
        grace: limits.upload_grace,
        metrics: Arc::clone(&shared.metrics),
    };
    let conn = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = *drain.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    let trip = |limit: Limit, what: &str| {
        shared.metrics.tripped(limit);
        tracing::debug!("connection from {peer}: {what}: closing it");
    };
    loop {
        tokio::select! {
            // The connection first: most wake-ups are its traffic.
            biased;
            done = conn.as_mut() => {
                if let Err(e) = done {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out && activity.partial_head() {
                        trip(Limit::HeaderTimeout, "request headers not complete in time");
                    } else if timed_out {
                        trip(Limit::IdleTimeout, "no request in time");
                    } else {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                }
                return;
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                    // Nothing in flight (idle, or a request head not yet complete): nothing to
                    // finish, close now rather than wait for the client.
                    if activity.idle_for().is_some() {
                        return;
                    }
                }
            }
            _ = ticks.tick() => {
                if activity.write_blocked_for().is_some_and(|t| t >= limits.idle_timeout) {
                    trip(Limit::SendStall, "the client stopped reading its response");
                    return;
                }
                if activity.requests() == 0 && activity.age() >= limits.header_timeout {
                    trip(Limit::HeaderTimeout, "no request headers in time");
                    return;
                }
                if activity.head_wait().is_some_and(|t| t >= limits.header_timeout) {
                    if activity.partial_head() {
                        trip(Limit::HeaderTimeout, "request headers not complete in time");
                    } else {
                        trip(Limit::IdleTimeout, "no request in time");
                    }
                    return;
                }
                if draining && activity.idle_for().is_some() {
                    return;
                }
                if activity.idle_for().is_some_and(|t| t >= limits.idle_timeout) {
                    trip(Limit::IdleTimeout, "idle");
                    return;
                }
            }
        }
    }
}

/// The per-connection service: marks each request in flight until its response is sent, and
/// holds its body to the minimum upload rate.
#[derive(Clone)]
struct RequestService {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    min_rate: u64,
    grace: Duration,
    metrics: Arc<Metrics>,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for RequestService {
    type Response = axum::http::Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: axum::http::Request<Incoming>) -> Self::Future {
        let receiving = !http_body::Body::is_end_stream(request.body());
        let h2 = request.version() == axum::http::Version::HTTP_2;
        let in_flight = self.activity.begin(receiving, h2);
        let request = if receiving {
            let (min_rate, grace) = (self.min_rate, self.grace);
            let metrics = Arc::clone(&self.metrics);
            request.map(|body| Body::new(MinRate::new(body, min_rate, grace, metrics)))
        } else {
            // Nothing to hold to a rate (most GETs): an empty body, with no clock read or
            // allocation for it.
            request.map(|_| Body::empty())
        };
        let response = hyper::service::Service::call(&self.inner, request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is sent in full (or dropped).
pub(crate) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once it falls behind the minimum rate: after `grace`, at least
/// `rate` bytes a second on average must have arrived.
struct MinRate {
    inner: Incoming,
    rate: u64,
    grace: Duration,
    start: tokio::time::Instant,
    received: u64,
    /// When the body next falls behind (none when the rate is off or the body has ended).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

/// The error of a body slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the upload is slower than {rate} bytes/s (--min-upload-rate)")]
pub(crate) struct TooSlow {
    rate: u64,
}

impl MinRate {
    fn new(inner: Incoming, rate: u64, grace: Duration, metrics: Arc<Metrics>) -> MinRate {
        let start = tokio::time::Instant::now();
        let timer = (rate > 0 && !http_body::Body::is_end_stream(&inner))
            .then(|| Box::pin(tokio::time::sleep_until(start + grace)));
        MinRate {
            inner,
            rate,
            grace,
            start,
            received: 0,
            timer,
            metrics,
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate.max(1) as f64);
        self.start + self.grace + earned
    }
}

impl http_body::Body for MinRate {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    if let Some(t) = this.timer.as_mut() {
                        t.as_mut().reset(deadline);
                    }
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.timer = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(t) = this.timer.as_mut()
            && t.as_mut().poll(cx).is_ready()
        {
            this.timer = None;
            this.metrics.tripped(Limit::UploadRate);
            tracing::debug!(
                "an upload fell under {} bytes/s after {} bytes: failing it",
                this.rate,
                this.received
            );
            return Poll::Ready(Some(Err(Box::new(TooSlow { rate: this.rate }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! Accepted connections, set up so that no request waits on TCP's timers.
//!
//! Many HTTP clients (ccache's among them) write a request's headers and its body in two
//! writes with Nagle's algorithm on: the body leaves only once the headers are acknowledged.
//! Linux delays an ACK by up to 40 ms when it expects to piggyback it on a reply — which it
//! does on a keep-alive connection that has just sent a response — so every such upload
//! would wait 40 ms for nothing. [`Conn`] arms `TCP_QUICKACK` (which leaves the delayed-ACK
//! "pingpong" mode and sends the pending ACK at once) whenever a client could be waiting for
//! an ACK:
//! - after each read that returned data while a request body is being received (the request
//!   service marks that on the connection's [`Activity`]), as an upload's segments arrive;
//! - when a read finds the socket empty although bytes were read since the connection last
//!   wrote, and the connection waits for the client (no request in flight, or a body
//!   arriving): a client held back by Nagle sends the rest of a request head, or the body
//!   after the headers, only once what it sent is acknowledged.
//!
//! A bodyless request read whole (a `GET`) needs neither: it is in flight once its head is
//! parsed, and its response carries the ACK, so the option costs it no `setsockopt` and no
//! bare ACK segment. The option
//! is not sticky (the kernel goes back to delayed ACKs once the server replies), hence once
//! per read rather than once per connection. `TCP_NODELAY` is set once, so a response written
//! in pieces is not held back waiting for the client's (possibly delayed) ACK either.
//!
//! Errors setting either option are logged at debug level and ignored: the connection still
//! works, only slower.
//!
//! A [`Conn`] also keeps its [`Activity`]: when it last read or wrote, since when a write has
//! been waiting for the client to make room, how many requests are in flight on it, and whether
//! bytes arrived since the last request began or ended. The accept loop's watchdog reads it to
//! close idle connections and responses the client stopped reading
//! ([`crate::accept`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection has been doing, shared between its [`Conn`], its requests and the accept
/// loop's watchdog. Times are milliseconds since the connection was accepted.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Last read or write that moved bytes.
    last_io: AtomicU64,
    /// When a write started waiting for room in the socket (plus one; 0: not waiting).
    write_blocked_since: AtomicU64,
    /// Requests whose response has not been sent in full.
    in_flight: AtomicU64,
    /// Requests begun on the connection.
    requests: AtomicU64,
    /// Requests in flight whose body may still be arriving (reads are acknowledged at once).
    receiving: AtomicU64,
    /// Bytes arrived since the last request began or ended (the start of a request head).
    unparsed: AtomicBool,
    /// When the connection last began waiting for a request head: accepted, or the last
    /// request in flight finished.
    head_wait_since: AtomicU64,
    /// A request arrived over HTTP/2 (whose idle time between streams is no head wait).
    h2: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            receiving: AtomicU64::new(0),
            unparsed: AtomicBool::new(false),
            head_wait_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long ago the connection was accepted.
    pub(crate) fn age(&self) -> Duration {
        self.start.elapsed()
    }

    /// Requests begun on the connection so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How long the connection has had no request in flight and no traffic, if it has none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last_io.load(Ordering::Relaxed);
        Some(Duration::from_millis(self.now().saturating_sub(last)))
    }

    /// How long a write has been waiting for the client to read, if one is.
    pub(crate) fn write_blocked_for(&self) -> Option<Duration> {
        match self.write_blocked_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since - 1))),
        }
    }

    /// Whether part of a request head has arrived and is not yet a request.
    pub(crate) fn partial_head(&self) -> bool {
        self.unparsed.load(Ordering::Relaxed)
    }

    /// How long an HTTP/1.1 connection has been waiting for its next request head (since it was
    /// accepted or its last request finished), if it is waiting for one: none with a request in
    /// flight, or once a request came over HTTP/2.
    pub(crate) fn head_wait(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.h2.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.head_wait_since.load(Ordering::Relaxed);
        Some(Duration::from_millis(self.now().saturating_sub(since)))
    }

    /// A request began (over HTTP/2 when `h2`), with a body still to arrive when `receiving`;
    /// the guard marks its end when dropped (once its response is sent).
    pub(crate) fn begin(self: &Arc<Self>, receiving: bool, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if receiving {
            self.receiving.fetch_add(1, Ordering::AcqRel);
        }
        self.unparsed.store(false, Ordering::Relaxed);
        InFlight {
            activity: Arc::clone(self),
            receiving,
        }
    }

    /// Whether a request body may be arriving: each read is then acknowledged at once.
    fn receiving(&self) -> bool {
        self.receiving.load(Ordering::Acquire) > 0
    }

    /// Whether the connection waits for the client's bytes rather than for its own response:
    /// no request in flight (a head is still to come), or a body still arriving.
    fn awaits_client(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 || self.receiving()
    }

    fn read(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
        self.unparsed.store(true, Ordering::Relaxed);
    }

    fn wrote(&self, blocked: bool) {
        if blocked {
            if self.write_blocked_since.load(Ordering::Relaxed) == 0 {
                self.write_blocked_since
                    .store(self.now() + 1, Ordering::Relaxed);
            }
        } else {
            self.write_blocked_since.store(0, Ordering::Relaxed);
            self.last_io.store(self.now(), Ordering::Relaxed);
        }
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<Activity>,
    receiving: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.receiving {
            a.receiving.fetch_sub(1, Ordering::AcqRel);
        }
        let now = a.now();
        a.last_io.store(now, Ordering::Relaxed);
        a.head_wait_since.store(now, Ordering::Relaxed);
        a.unparsed.store(false, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted TCP connection that acknowledges what it reads promptly (see the module docs).
#[derive(Debug)]
pub(crate) struct Conn {
    tcp: TcpStream,
    activity: Arc<Activity>,
    /// Bytes were read since the connection last wrote or acknowledged (see the module docs).
    unacked: bool,
}

impl Conn {
    /// Wrap an accepted stream: set `TCP_NODELAY` and arm `TCP_QUICKACK`.
    pub(crate) fn new(tcp: TcpStream, activity: Arc<Activity>) -> Conn {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY: {e}");
        }
        let conn = Conn {
            tcp,
            activity,
            unacked: false,
        };
        conn.quick_ack();
        conn
    }

    /// Leave delayed-ACK mode and acknowledge what has been read so far.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn quick_ack(&self) {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: the descriptor is owned by `self.tcp` and open; the option value is a
        // c_int that outlives the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!("setting TCP_QUICKACK: {}", io::Error::last_os_error());
        }
    }

    /// Other systems have no per-socket switch; their delayed ACKs are left as they are.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn quick_ack(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.activity.read();
                if this.activity.receiving() {
                    this.quick_ack();
                    this.unacked = false;
                } else {
                    this.unacked = true;
                }
            }
            Poll::Pending if this.unacked && this.activity.awaits_client() => {
                this.unacked = false;
                this.quick_ack();
            }
            _ => {}
        }
        polled
    }
}

impl Conn {
    /// Note a write's outcome: a segment that left carries the ACK of everything read.
    fn note_write(&mut self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.unacked = false;
        }
        self.activity.wrote(polled.is_pending());
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

//! Accepted connections, set up so that no request waits on TCP's timers.
//!
//! Many HTTP clients (ccache's among them) write a request's headers and its body in two
//! writes with Nagle's algorithm on: the body leaves only once the headers are acknowledged.
//! Linux delays an ACK by up to 40 ms when it expects to piggyback it on a reply — which it
//! does on a keep-alive connection that has just sent a response — so every such upload
//! would wait 40 ms for nothing. [`Conn`] re-arms `TCP_QUICKACK` after each read that
//! returned data: that leaves the delayed-ACK ("pingpong") mode and sends the pending ACK at
//! once. The option is not sticky (the kernel goes back to delayed ACKs once the server
//! replies), hence once per read rather than once per connection; it costs one `setsockopt`
//! beside a `read` that already happened. `TCP_NODELAY` is set once, so a response written
//! in pieces is not held back waiting for the client's (possibly delayed) ACK either.
//!
//! Errors setting either option are logged at debug level and ignored: the connection still
//! works, only slower.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// An accepted TCP connection that acknowledges what it reads promptly (see the module docs).
#[derive(Debug)]
pub(crate) struct Conn {
    tcp: TcpStream,
}

impl Conn {
    /// Wrap an accepted stream: set `TCP_NODELAY` and arm `TCP_QUICKACK`.
    pub(crate) fn new(tcp: TcpStream) -> Conn {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY: {e}");
        }
        let conn = Conn { tcp };
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
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.quick_ack();
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
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

/// The plain-HTTP listener: a [`TcpListener`] whose connections are [`Conn`]s.
#[derive(Debug)]
pub(crate) struct Listener(pub(crate) TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        // axum's accept retries (with a back-off) on errors such as running out of descriptors.
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.0).await;
        (Conn::new(tcp), peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

//! A TCP proxy a test controls, to put a misbehaving network between a client and a real
//! server: it passes traffic through, or accepts connections and never answers, or resets them
//! (a TCP RST, through `SO_LINGER` 0) at once or part-way through a transfer.
//!
//! ```no_run
//! use larder_testservers::{Proxy, ProxyMode};
//! let proxy = Proxy::start("127.0.0.1:9000".parse().unwrap()).expect("proxy");
//! // point the client at proxy.addr() ...
//! proxy.set_mode(ProxyMode::Hang);
//! ```
//!
//! The mode is read when a connection is accepted, so a connection keeps the behaviour it
//! started with. Threads, not async: a test's client and server run in other processes, and
//! each connection costs two threads for as long as it lasts. Dropping the proxy closes every
//! connection it holds and joins its accept thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Connect to the target and copy bytes both ways.
    Pass,
    /// Accept and never answer: nothing is read, nothing is sent, the connection stays open
    /// until the proxy is dropped (a server that hangs).
    Hang,
    /// Reset the connection (RST) as soon as it is accepted.
    Reset,
    /// Pass traffic through, then reset the client's connection (RST) once this many bytes
    /// have gone through it, both directions counted (a connection cut mid-transfer).
    ResetAfter(u64),
    /// Pass traffic through, then stop forwarding in both directions once this many bytes have
    /// gone through, keeping both connections open (a transfer that stalls).
    HangAfter(u64),
}

/// A running proxy from a loopback port to one target address.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    mode: Mutex<ProxyMode>,
    stop: AtomicBool,
    accepted: AtomicU64,
    /// Bytes copied so far, both directions, every connection.
    passed: AtomicU64,
    /// Connections that reached their [`ProxyMode::HangAfter`] limit and stalled.
    stalled: AtomicU64,
    /// Every socket the proxy holds, so that a drop can close them all.
    sockets: Mutex<Vec<Weak<TcpStream>>>,
}

impl Shared {
    fn mode(&self) -> ProxyMode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self, s: &Arc<TcpStream>) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.retain(|w| w.strong_count() > 0);
        sockets.push(Arc::downgrade(s));
    }
}

impl Proxy {
    /// Listen on a free loopback port, forwarding to `target`, in [`ProxyMode::Pass`].
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            mode: Mutex::new(ProxyMode::Pass),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            sockets: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("proxy-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Proxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for clients that take a URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What connections accepted from now on get.
    pub fn set_mode(&self, mode: ProxyMode) {
        *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many bytes the proxy has copied so far, both directions and every connection
    /// counted: a test waits on it to act in the middle of a transfer.
    pub fn bytes_passed(&self) -> u64 {
        self.shared.passed.load(Ordering::Relaxed)
    }

    /// How many connections have stalled at their [`ProxyMode::HangAfter`] limit so far: a
    /// test waits on it to act while a transfer is known to be unfinished.
    pub fn stalled(&self) -> u64 {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Close every connection the proxy holds now (both sides shut down; new connections are
    /// still accepted).
    pub fn close_all(&self) {
        let sockets = self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for s in sockets.iter().filter_map(Weak::upgrade) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.close_all();
        // Wake the accept loop, which is blocked in accept(2).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(client);
        shared.hold(&client);
        match shared.mode() {
            ProxyMode::Reset => reset(&client),
            ProxyMode::Hang => {
                // Held open (not read) until the proxy closes it.
                let shared = Arc::clone(shared);
                let _ = std::thread::Builder::new()
                    .name("proxy-hang".into())
                    .spawn(move || park_until_stopped(&shared, client));
            }
            mode => {
                let shared = Arc::clone(shared);
                let _ = std::thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || forward(&shared, client, mode));
            }
        }
    }
}

/// Set `SO_LINGER` to 0 so that closing `s` sends a RST instead of a FIN.
fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a properly sized `linger` value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Reset `s`: linger 0, and wake whoever reads it (shutting down the read side sends nothing);
/// the RST goes out when the last holder drops it.
fn reset(s: &Arc<TcpStream>) {
    set_linger_zero(s);
    let _ = s.shutdown(Shutdown::Read);
}

fn park_until_stopped(shared: &Shared, held: Arc<TcpStream>) {
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
}

/// Copy between `client` and a new connection to the target, applying `mode`'s limit.
fn forward(shared: &Arc<Shared>, client: Arc<TcpStream>, mode: ProxyMode) {
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) else {
        reset(&client);
        return;
    };
    let server = Arc::new(server);
    shared.hold(&server);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let limit = match mode {
        ProxyMode::ResetAfter(n) | ProxyMode::HangAfter(n) => n,
        _ => u64::MAX,
    };
    let conn = Arc::new(Conn {
        client,
        server,
        passed: AtomicU64::new(0),
        limit,
        hang: matches!(mode, ProxyMode::HangAfter(_)),
        stalled: AtomicBool::new(false),
        aborted: AtomicBool::new(false),
    });
    let up = {
        let (conn, shared) = (Arc::clone(&conn), Arc::clone(shared));
        std::thread::Builder::new()
            .name("proxy-up".into())
            .spawn(move || conn.copy(&shared, true))
    };
    conn.copy(shared, false);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// One proxied connection: the client's socket, the target's, and the bytes passed so far.
struct Conn {
    client: Arc<TcpStream>,
    server: Arc<TcpStream>,
    passed: AtomicU64,
    limit: u64,
    hang: bool,
    /// Set once this connection has stalled (both directions reach the limit; counted once).
    stalled: AtomicBool,
    /// Set when the client's connection is being reset: no FIN may go out before the RST.
    aborted: AtomicBool,
}

impl Conn {
    /// Copy one direction (`upstream`: client to server) until EOF, an error or the limit.
    fn copy(&self, shared: &Shared, upstream: bool) {
        let (mut from, mut to) = if upstream {
            (&*self.client, &*self.server)
        } else {
            (&*self.server, &*self.client)
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let room = self
                .limit
                .saturating_sub(self.passed.load(Ordering::SeqCst));
            if room == 0 {
                return self.limit_reached(shared);
            }
            let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let n = match from.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    // Pass the end on: the other side sees EOF after what was sent.
                    if !self.aborted.load(Ordering::SeqCst) {
                        let _ = to.shutdown(Shutdown::Write);
                    }
                    return;
                }
                Ok(n) => n,
            };
            self.passed.fetch_add(n as u64, Ordering::SeqCst);
            if to.write_all(&buf[..n]).is_err() {
                let _ = from.shutdown(Shutdown::Read);
                return;
            }
            shared.passed.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn limit_reached(&self, shared: &Shared) {
        if self.hang {
            if !self.stalled.swap(true, Ordering::SeqCst) {
                shared.stalled.fetch_add(1, Ordering::SeqCst);
            }
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            self.aborted.store(true, Ordering::SeqCst);
            reset(&self.client);
            let _ = self.server.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every connection with `len` bytes, then closes it.
    fn sender(len: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut one = [0u8; 1];
                    // Wait for the client's request byte, then answer.
                    if conn.read_exact(&mut one).is_ok() {
                        let _ = conn.write_all(&vec![7u8; len]);
                    }
                });
            }
        });
        addr
    }

    /// Send one byte through `proxy`, then read until EOF, an error or a 1 s silence.
    fn fetch(proxy: &Proxy) -> (usize, io::Result<()>) {
        let mut s = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        if let Err(e) = s.write_all(b"?") {
            return (0, Err(e));
        }
        let mut got = 0;
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got += n,
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[test]
    fn each_mode_does_what_it_says() {
        let len = 1 << 20;
        let proxy = Proxy::start(sender(len)).expect("proxy");

        let (got, end) = fetch(&proxy);
        assert_eq!((got, end.is_ok()), (len, true), "pass: {end:?}");
        assert_eq!(proxy.bytes_passed(), len as u64 + 1);

        proxy.set_mode(ProxyMode::Hang);
        let (got, end) = fetch(&proxy);
        let kind = end.expect_err("a hang ends in the read time-out").kind();
        assert!(matches!(
            kind,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert_eq!(got, 0);

        proxy.set_mode(ProxyMode::Reset);
        let (got, end) = fetch(&proxy);
        assert_eq!(got, 0);
        let kind = end.expect_err("reset on accept").kind();
        assert!(
            matches!(
                kind,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{kind:?}"
        );

        proxy.set_mode(ProxyMode::ResetAfter(100_000));
        let (got, end) = fetch(&proxy);
        assert!(got <= 100_000, "{got}");
        assert_eq!(
            end.expect_err("reset mid-stream").kind(),
            io::ErrorKind::ConnectionReset
        );

        proxy.set_mode(ProxyMode::HangAfter(100_000));
        let (got, end) = fetch(&proxy);
        assert!(got > 0 && got <= 100_000, "{got}");
        let kind = end.expect_err("a stall ends in the read time-out").kind();
        assert!(matches!(
            kind,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert_eq!(proxy.stalled(), 1, "the stalled connection is counted once");
        assert_eq!(proxy.accepted(), 5);
    }
}

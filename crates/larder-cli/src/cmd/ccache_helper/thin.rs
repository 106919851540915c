//! The helper's hit lookup against a plain `http://` `larder serve`: a `GET` of an entry (and of
//! the value's blob when it is not inside the entry) over a kept-alive HTTP/1.1 connection,
//! written and parsed here.
//!
//! ccache asks for one value per process and the helper idles between processes, so each hit
//! runs through the HTTP client cold; a general client (pool checkout, URL parsing, body
//! channels, timers) costs more CPU than the exchange itself. This client does only what a
//! lookup needs: a request line and a few headers out; a status line, headers and a body in.
//!
//! Bounds, so that a broken or hostile server costs a miss and no more:
//! - the whole lookup (connecting included) runs within the caller's time-out;
//! - the status line and headers are at most [`MAX_HEAD`] bytes;
//! - a body (`Content-Length`, chunked, or up to the connection's end) is at most the caller's
//!   limit, and a larger one is refused before it is read.
//!
//! Idle connections are kept (up to [`MAX_IDLE`]) for the next lookup. A kept connection the
//! server has closed meanwhile fails before any answer arrives: the request is sent once more
//! on a new connection.

use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest status line plus headers read.
const MAX_HEAD: usize = 16 << 10;
/// The most headers read.
const MAX_HEADERS: usize = 64;
/// Idle connections kept for later lookups.
const MAX_IDLE: usize = 4;

/// Why a lookup failed.
#[derive(Debug)]
pub(crate) enum ThinError {
    /// Connecting, sending or receiving failed (refused, reset, closed early).
    Io(io::Error),
    /// No complete answer within the time-out.
    Timeout(Duration),
    /// The answer is not HTTP/1.1 as this client reads it.
    Malformed(String),
    /// The body is larger than the caller takes.
    TooLarge(u64),
    /// A status other than 200 or 404.
    Status(u16),
}

impl ThinError {
    /// Whether the server may answer if asked again later (a connection or server failure),
    /// as opposed to an answer this client will not take.
    pub(crate) fn is_temporary(&self) -> bool {
        match self {
            ThinError::Io(_) | ThinError::Timeout(_) => true,
            ThinError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            ThinError::Malformed(_) | ThinError::TooLarge(_) => false,
        }
    }
}

impl fmt::Display for ThinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThinError::Io(e) => write!(f, "{e}"),
            ThinError::Timeout(t) => write!(f, "no answer within {} s", t.as_secs_f64()),
            ThinError::Malformed(why) => write!(f, "a malformed answer: {why}"),
            ThinError::TooLarge(n) => write!(f, "an answer of {n} bytes or more, over the limit"),
            ThinError::Status(s) => write!(f, "status {s}"),
        }
    }
}

impl From<io::Error> for ThinError {
    fn from(e: io::Error) -> ThinError {
        ThinError::Io(e)
    }
}

type Conn = BufReader<TcpStream>;

/// Entry lookups on one `larder serve` at `http://AUTHORITY/PREFIX`.
pub(crate) struct ThinClient {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    host: String,
    /// The native protocol's path, without a trailing slash (`/v1`).
    prefix: String,
    /// An `Authorization` header value, when a token is configured.
    auth: Option<String>,
    idle: Mutex<Vec<Conn>>,
}

impl fmt::Debug for ThinClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThinClient")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How an answer's body is delimited.
enum Framing {
    Length(u64),
    Chunked,
    /// Up to the end of the connection.
    Close,
}

impl ThinClient {
    /// A client for `base` (`http://HOST[:PORT][/PREFIX]`; no prefix means `/v1`, as for the
    /// http store), or `None` for anything it does not handle (https, credentials in the URL, a
    /// query): those go through the store.
    pub(crate) fn new(base: &str, token: Option<&str>) -> Option<ThinClient> {
        let scheme = base.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = &base[7..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:[]".contains(c);
        if authority.is_empty() || !authority.chars().all(plain) {
            return None;
        }
        let path = path.trim_end_matches('/');
        if !path.chars().all(|c| plain(c) || c == '/') {
            return None;
        }
        let prefix = if path.is_empty() { "/v1" } else { path };
        // A port after the host (after the `]` of an IPv6 address).
        let has_port = authority
            .rsplit_once(']')
            .map_or(authority, |(_, after)| after)
            .contains(':');
        let addr = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let auth = match token {
            Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Some(format!("Bearer {t}")),
            Some(_) => return None,
            None => None,
        };
        Some(ThinClient {
            addr,
            host: authority.to_owned(),
            prefix: prefix.to_owned(),
            auth,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The entry stored under `key` (its encoded bytes), `None` if the server has none. The
    /// body may be at most `max_body` bytes; the whole lookup takes at most `timeout`.
    pub(crate) async fn get_entry(
        &self,
        key: &str,
        max_body: u64,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, ThinError> {
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
        {
            return Err(ThinError::Malformed(format!(
                "key {key:?} needs escaping in a URL"
            )));
        }
        self.get(&format!("entries/{key}?record_access=1"), max_body, timeout)
            .await
    }

    /// The blob whose BLAKE3 digest is `hex` (unverified: the caller checks it), `None` if the
    /// server has none; as [`ThinClient::get_entry`] otherwise.
    pub(crate) async fn get_blob(
        &self,
        hex: &str,
        max_body: u64,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, ThinError> {
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ThinError::Malformed(format!("digest {hex:?}")));
        }
        self.get(&format!("blobs/{hex}"), max_body, timeout).await
    }

    /// `GET PREFIX/path`.
    async fn get(
        &self,
        path: &str,
        max_body: u64,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, ThinError> {
        let mut request = format!(
            "GET {}/{path} HTTP/1.1\r\nHost: {}\r\n",
            self.prefix, self.host
        );
        if let Some(auth) = &self.auth {
            request.push_str("Authorization: ");
            request.push_str(auth);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        match tokio::time::timeout(timeout, self.exchange(request.as_bytes(), max_body)).await {
            Ok(result) => result,
            Err(_) => Err(ThinError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, request: &[u8], max_body: u64) -> Result<Option<Vec<u8>>, ThinError> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(mut conn) = kept {
            match once(&mut conn, request, max_body).await {
                Ok(Answer { body, keep }) => {
                    if keep {
                        self.put_back(conn);
                    }
                    return Ok(body);
                }
                // The server closed the kept connection before answering: ask on a new one.
                Err(Attempt::Stale(_)) => {}
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        let mut conn = self.connect().await?;
        match once(&mut conn, request, max_body).await {
            Ok(Answer { body, keep }) => {
                if keep {
                    self.put_back(conn);
                }
                Ok(body)
            }
            Err(Attempt::Stale(e)) => Err(ThinError::Io(e)),
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    /// Open a connection now and keep it for the next lookup, so that the first lookup does
    /// not wait for the connect. A failure is left for that lookup to meet (and report).
    pub(crate) async fn connect_ahead(&self, timeout: Duration) {
        match tokio::time::timeout(timeout, self.connect()).await {
            Ok(Ok(conn)) => self.put_back(conn),
            Ok(Err(e)) => tracing::debug!("ccache helper: connecting to {} ahead: {e}", self.addr),
            Err(_) => tracing::debug!(
                "ccache helper: connecting to {} ahead: timed out",
                self.addr
            ),
        }
    }

    /// A new connection to the server.
    async fn connect(&self) -> io::Result<Conn> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(BufReader::with_capacity(16 << 10, stream))
    }

    fn put_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

/// An answer read in full.
struct Answer {
    /// `None` for a 404.
    body: Option<Vec<u8>>,
    /// Whether the connection may carry another request.
    keep: bool,
}

/// How one request on one connection failed.
enum Attempt {
    /// Nothing came back: the connection was closed or reset before the answer started.
    Stale(io::Error),
    Failed(ThinError),
}

impl From<ThinError> for Attempt {
    fn from(e: ThinError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// Send `request` on `conn` and read the answer.
async fn once(conn: &mut Conn, request: &[u8], max_body: u64) -> Result<Answer, Attempt> {
    if let Err(e) = conn.get_mut().write_all(request).await {
        return Err(Attempt::Stale(e));
    }
    // The first bytes of the answer: none at all means the server had closed the connection.
    match conn.fill_buf().await {
        Ok([]) => {
            return Err(Attempt::Stale(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(Attempt::Stale(e)),
        Err(e) => return Err(Attempt::Failed(e.into())),
    }
    Ok(read_answer(conn, max_body).await?)
}

/// Read a status line, headers and body.
async fn read_answer(conn: &mut Conn, max_body: u64) -> Result<Answer, ThinError> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(conn, &mut budget).await?;
    let status = parse_status(&status_line)?;
    let mut framing = Framing::Close;
    let mut keep = true;
    let mut headers = 0;
    loop {
        let line = read_line(conn, &mut budget).await?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(ThinError::Malformed("too many headers".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ThinError::Malformed(format!("header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| ThinError::Malformed(format!("Content-Length {value:?}")))?;
            if matches!(framing, Framing::Length(m) if m != n) {
                return Err(ThinError::Malformed("two Content-Lengths".into()));
            }
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(ThinError::Malformed(format!("Transfer-Encoding {value:?}")));
            }
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            keep &= !value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    // 1xx answers are not expected for a GET without `Expect`.
    if status == 404 {
        // The body (a short message) is read so the connection can be used again.
        let kept = discard_body(conn, framing).await?;
        return Ok(Answer {
            body: None,
            keep: keep && kept,
        });
    }
    if status != 200 {
        return Err(ThinError::Status(status));
    }
    let (body, kept) = read_body(conn, framing, max_body).await?;
    Ok(Answer {
        body: Some(body),
        keep: keep && kept,
    })
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status(line: &str) -> Result<u16, ThinError> {
    let malformed = || ThinError::Malformed(format!("status line {line:?}"));
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().ok_or_else(malformed)?;
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(malformed());
    }
    let code = parts.next().ok_or_else(malformed)?;
    if code.len() != 3 {
        return Err(malformed());
    }
    code.parse().map_err(|_| malformed())
}

/// One line without its CRLF, taking its length from `budget`.
async fn read_line<R: AsyncBufRead + Unpin>(
    conn: &mut R,
    budget: &mut usize,
) -> Result<String, ThinError> {
    let mut line = Vec::new();
    loop {
        let buf = conn.fill_buf().await?;
        if buf.is_empty() {
            return Err(ThinError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the headers",
            )));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if take > *budget {
            return Err(ThinError::Malformed(format!(
                "headers longer than {MAX_HEAD} bytes"
            )));
        }
        *budget -= take;
        line.extend_from_slice(&buf[..take]);
        conn.consume(take);
        if done {
            break;
        }
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ThinError::Malformed("a header that is not UTF-8".into()))
}

/// The body, and whether the connection is still usable after it.
async fn read_body(
    conn: &mut Conn,
    framing: Framing,
    max_body: u64,
) -> Result<(Vec<u8>, bool), ThinError> {
    match framing {
        Framing::Length(n) => {
            if n > max_body {
                return Err(ThinError::TooLarge(n));
            }
            let len = usize::try_from(n).map_err(|_| ThinError::TooLarge(n))?;
            let mut body = vec![0; len];
            conn.read_exact(&mut body).await?;
            Ok((body, true))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            let mut budget = MAX_HEAD;
            loop {
                let line = read_line(conn, &mut budget).await?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| ThinError::Malformed(format!("chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(conn, &mut budget).await?.is_empty() {}
                    return Ok((body, true));
                }
                let total = (body.len() as u64).saturating_add(size);
                if total > max_body {
                    return Err(ThinError::TooLarge(total));
                }
                let start = body.len();
                // `total` is at most `max_body`, which fits in memory by the caller's choice.
                body.resize(total as usize, 0);
                conn.read_exact(&mut body[start..]).await?;
                let end = read_line(conn, &mut budget).await?;
                if !end.is_empty() {
                    return Err(ThinError::Malformed("chunk longer than its size".into()));
                }
            }
        }
        Framing::Close => {
            let mut body = Vec::new();
            let read = (&mut *conn)
                .take(max_body.saturating_add(1))
                .read_to_end(&mut body)
                .await?;
            if read as u64 > max_body {
                return Err(ThinError::TooLarge(read as u64));
            }
            Ok((body, false))
        }
    }
}

/// Skip a short body; a long one closes the connection instead. Returns whether the
/// connection is still usable.
async fn discard_body(conn: &mut Conn, framing: Framing) -> Result<bool, ThinError> {
    match framing {
        Framing::Length(0) => Ok(true),
        Framing::Close => Ok(false),
        framing => match read_body(conn, framing, MAX_HEAD as u64).await {
            Ok((_, kept)) => Ok(kept),
            Err(ThinError::TooLarge(_)) => Ok(false),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    /// A loopback server: `answer` runs for every connection, with a function that reads one
    /// request head. Returns the client and the count of accepted connections.
    fn server(
        answer: impl Fn(&mut StdStream, &dyn Fn(&mut StdStream) -> bool) + Send + Sync + 'static,
    ) -> (ThinClient, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let answer = Arc::clone(&answer);
                std::thread::spawn(move || answer(&mut stream, &read_head));
            }
        });
        let client = ThinClient::new(&format!("http://{addr}"), Some("tok")).unwrap();
        (client, accepted)
    }

    /// Read a request head; false at the end of the connection.
    fn read_head(stream: &mut StdStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("GET /v1/entries/ccache/ab?record_access=1 HTTP/1.1\r\n"));
        assert!(head.contains("\r\nAuthorization: Bearer tok\r\n"), "{head}");
        true
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn bases_map_to_addresses_and_prefixes() {
        let c = ThinClient::new("http://cache:7180", None).unwrap();
        assert_eq!((c.addr.as_str(), c.prefix.as_str()), ("cache:7180", "/v1"));
        let c = ThinClient::new("HTTP://[::1]/team/v1/", None).unwrap();
        assert_eq!(
            (c.addr.as_str(), c.prefix.as_str()),
            ("[::1]:80", "/team/v1")
        );
        assert!(ThinClient::new("https://cache:7180", None).is_none());
        assert!(ThinClient::new("http://u:pw@cache:7180", None).is_none());
        assert!(ThinClient::new("http://cache:7180/v1?x=1", None).is_none());
        assert!(ThinClient::new("http://cache:7180", Some("a b")).is_none());
    }

    #[test]
    fn answers_of_each_framing_share_one_connection() {
        let (client, accepted) = server(|s, head| {
            let answers: [&[u8]; 4] = [
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ];
            for answer in answers {
                if !head(s) {
                    return;
                }
                s.write_all(answer).unwrap();
            }
        });
        run(async {
            let get = || client.get_entry("ccache/ab", 100, T);
            assert_eq!(get().await.unwrap(), Some(b"hello".to_vec()));
            assert_eq!(get().await.unwrap(), Some(b"abcde".to_vec()));
            assert_eq!(get().await.unwrap(), None);
            assert_eq!(get().await.unwrap(), Some(Vec::new()));
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_connection_the_server_closed_is_replaced() {
        // One answer per connection, without saying so (`Connection: close` is not sent).
        let (client, accepted) = server(|s, head| {
            if head(s) {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
            }
        });
        run(async {
            for _ in 0..3 {
                let got = client.get_entry("ccache/ab", 100, T).await.unwrap();
                assert_eq!(got, Some(b"ok".to_vec()));
                // Let the server's close arrive before the next request.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_connection_opened_ahead_serves_the_first_lookup() {
        let (client, accepted) = server(|s, head| {
            for _ in 0..2 {
                if !head(s) {
                    return;
                }
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
            }
        });
        run(async {
            client.connect_ahead(T).await;
            assert_eq!(client.idle.lock().unwrap().len(), 1);
            for _ in 0..2 {
                let got = client.get_entry("ccache/ab", 100, T).await.unwrap();
                assert_eq!(got, Some(b"ok".to_vec()));
            }
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_connect_ahead_leaves_nothing_kept() {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let client = ThinClient::new(&format!("http://{addr}"), None).unwrap();
        run(client.connect_ahead(T));
        assert!(client.idle.lock().unwrap().is_empty());
    }

    /// The error a server sending `answer` (then holding the connection open) gives.
    fn refused(answer: &'static [u8], endless: Option<&'static [u8]>) -> ThinError {
        let (client, _) = server(move |s, head| {
            if !head(s) {
                return;
            }
            let _ = s.write_all(answer);
            if let Some(more) = endless {
                while s.write_all(more).is_ok() {}
            }
            std::thread::sleep(Duration::from_secs(30));
        });
        run(client.get_entry("ccache/ab", 1 << 20, Duration::from_secs(2))).unwrap_err()
    }

    #[test]
    fn broken_and_oversized_answers_are_refused_without_reading_them() {
        let e = refused(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            None,
        );
        assert!(matches!(e, ThinError::TooLarge(99999999999)), "{e}");
        let e = refused(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some(b"10000\r\n"),
        );
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some(&[b'a'; 4096]),
        );
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"HTTP/1.1 200 OK\r\nX-Flood: ", Some(b"xxxxxxxx"));
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"HTTP/1.1 200 OK\r\n", Some(b"X-Many: 1\r\n"));
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"SSH-2.0-OpenSSH\r\n\r\n", None);
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", None);
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", None);
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
        let e = refused(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", None);
        assert!(
            matches!(e, ThinError::Status(503)) && e.is_temporary(),
            "{e}"
        );
    }

    #[test]
    fn an_endless_chunked_body_stops_at_the_limit() {
        // Chunks of 64 KiB forever: refused once they add up to more than the 1 MiB limit.
        let chunk: &'static [u8] = Box::leak(
            [b"10000\r\n".as_slice(), &[b'z'; 0x10000], b"\r\n"]
                .concat()
                .into_boxed_slice(),
        );
        let e = refused(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some(chunk),
        );
        assert!(matches!(e, ThinError::TooLarge(n) if n > 1 << 20), "{e}");
        // Without framing, the body runs to the connection's end: refused past the limit too.
        let e = refused(b"HTTP/1.1 200 OK\r\n\r\n", Some(&[b'y'; 8192]));
        assert!(matches!(e, ThinError::TooLarge(_)), "{e}");
    }

    #[test]
    fn a_silent_or_trickling_server_times_out() {
        for trickle in [false, true] {
            let (client, _) = server(move |s, head| {
                if !head(s) {
                    return;
                }
                for b in b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" {
                    if !trickle {
                        break;
                    }
                    let _ = s.write_all(&[*b]);
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_secs(30));
            });
            let start = Instant::now();
            let timeout = Duration::from_millis(500);
            let e = run(client.get_entry("ccache/ab", 100, timeout)).unwrap_err();
            assert!(matches!(e, ThinError::Timeout(_)), "{e}");
            // The bound the lookup promises: its time-out, not the server's 30 s.
            assert!(start.elapsed() < Duration::from_secs(10));
        }
    }

    #[test]
    fn a_refused_connection_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = ThinClient::new(&format!("http://{addr}"), None).unwrap();
        let e = run(client.get_entry("ccache/ab", 100, T)).unwrap_err();
        assert!(matches!(e, ThinError::Io(_)) && e.is_temporary(), "{e}");
        let e = run(client.get_entry("ccache/a b", 100, T)).unwrap_err();
        assert!(matches!(e, ThinError::Malformed(_)), "{e}");
    }
}

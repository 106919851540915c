//! One HTTP/1.1 keep-alive connection, driven by hand (hyper's connection-level client), so
//! the soak knows exactly how many connections it opened: a pooled client opens a second
//! connection whenever the first has not yet been handed back when the next request starts.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderMap};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// A response, read to its end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// A header as a number.
    pub(crate) fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }
}

/// A keep-alive connection to `authority` (`127.0.0.1:PORT`), opened on first use and again
/// only when the server closed it or a request failed on it.
#[derive(Debug)]
pub(crate) struct Conn {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    /// Connections opened so far.
    pub(crate) opened: u64,
}

impl Conn {
    pub(crate) fn new(authority: &str, timeout: Duration) -> Conn {
        Conn {
            authority: authority.to_owned(),
            sender: None,
            timeout,
            opened: 0,
        }
    }

    /// Send `method path` with `body` and read the whole answer, within the time-out.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, String> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority.as_str())
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let timeout = self.timeout;
        let exchange = async {
            let sender = self.ready().await?;
            let resp = sender.send_request(req).await.map_err(|e| format!("{e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        if result.is_err() {
            // The connection's state is unknown: the next request opens a new one.
            self.sender = None;
        }
        result
    }

    /// The connection, ready for a request (a new one if there is none or it was closed).
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(s) = &mut self.sender
            && s.ready().await.is_err()
        {
            self.sender = None;
        }
        let sender = match self.sender.take() {
            Some(s) => s,
            None => self.connect().await?,
        };
        Ok(self.sender.insert(sender))
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        // The connection's I/O runs beside the requests; it ends when the sender is dropped
        // or the server closes the connection.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.opened += 1;
        Ok(sender)
    }
}

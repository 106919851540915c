//! ccache's storage-helper IPC protocol, version 1 (ccache's
//! `doc/remote_storage_helper_spec.md`): the greeting, requests and responses as bytes.
//!
//! Keys are a length byte and up to 255 bytes; values a `u64` length (host byte order: both
//! ends are on one host) and the bytes; messages a length byte and up to 255 bytes of UTF-8.
//! Responses start with `0x00` (done), `0x01` (not done: no such key, not stored, not removed)
//! or `0x02` and a message (failed).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this helper speaks.
const PROTOCOL_VERSION: u8 = 0x01;
/// Capability: `get`, `put` and `remove`.
const CAP_STORAGE: u8 = 0x00;
/// Capability: `info`.
const CAP_INFO: u8 = 0x01;

const OK: u8 = 0x00;
const NOOP: u8 = 0x01;
const ERR: u8 = 0x02;

/// Put flag: overwrite a value already stored under the key.
const PUT_OVERWRITE: u8 = 0x01;

/// The largest value a put may carry: it is held in memory while it is stored.
pub(crate) const MAX_VALUE_LEN: u64 = 2 << 30;

/// A request from ccache.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Read the value under a key.
    Get { key: Vec<u8> },
    /// Store a value; without `overwrite` a value already there is kept.
    Put {
        key: Vec<u8>,
        overwrite: bool,
        value: Vec<u8>,
    },
    /// Remove the value under a key.
    Remove { key: Vec<u8> },
    /// Shut the helper down now.
    Stop,
    /// Who the helper is, and messages for ccache's log.
    Info,
}

/// Why a request could not be read. Either way the connection is closed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket failed or closed in the middle of a request.
    Io(io::Error),
    /// A request type this helper does not know.
    UnknownRequest(u8),
    /// A put whose value is over [`MAX_VALUE_LEN`].
    TooLarge(u64),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::UnknownRequest(kind) => write!(f, "unknown request type {kind:#04x}"),
            ReadError::TooLarge(len) => write!(
                f,
                "a value of {len} bytes is over the helper's limit of {MAX_VALUE_LEN}"
            ),
        }
    }
}

/// Write the greeting a client reads first: protocol version and capabilities.
pub(crate) async fn write_greeting<W: AsyncWrite + Unpin>(w: &mut W) -> io::Result<()> {
    w.write_all(&[PROTOCOL_VERSION, 2, CAP_STORAGE, CAP_INFO])
        .await?;
    w.flush().await
}

/// Read the next request; `None` when the client closed the connection between requests.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Request>, ReadError> {
    let mut kind = [0u8; 1];
    if r.read(&mut kind).await? == 0 {
        return Ok(None);
    }
    let request = match kind[0] {
        0x00 => Request::Get {
            key: read_key(r).await?,
        },
        0x01 => {
            let key = read_key(r).await?;
            let flags = r.read_u8().await?;
            let len = read_u64(r).await?;
            if len > MAX_VALUE_LEN {
                return Err(ReadError::TooLarge(len));
            }
            let mut value = vec![0u8; len as usize];
            r.read_exact(&mut value).await?;
            Request::Put {
                key,
                overwrite: flags & PUT_OVERWRITE != 0,
                value,
            }
        }
        0x02 => Request::Remove {
            key: read_key(r).await?,
        },
        0x03 => Request::Stop,
        0x04 => Request::Info,
        other => return Err(ReadError::UnknownRequest(other)),
    };
    Ok(Some(request))
}

async fn read_key<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u8().await?;
    let mut key = vec![0u8; usize::from(len)];
    r.read_exact(&mut key).await?;
    Ok(key)
}

async fn read_u64<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    r.read_exact(&mut bytes).await?;
    Ok(u64::from_ne_bytes(bytes))
}

/// `<ok>`.
pub(crate) async fn write_ok<W: AsyncWrite + Unpin>(w: &mut W) -> io::Result<()> {
    w.write_all(&[OK]).await
}

/// `<noop>`.
pub(crate) async fn write_noop<W: AsyncWrite + Unpin>(w: &mut W) -> io::Result<()> {
    w.write_all(&[NOOP]).await
}

/// `<err> <msg>`, the message cut to what the protocol allows.
pub(crate) async fn write_err<W: AsyncWrite + Unpin>(w: &mut W, message: &str) -> io::Result<()> {
    w.write_all(&[ERR]).await?;
    write_msg(w, message).await
}

/// `<ok> <value>`: a get's answer.
pub(crate) async fn write_value<W: AsyncWrite + Unpin>(w: &mut W, value: &[u8]) -> io::Result<()> {
    w.write_all(&[OK]).await?;
    w.write_all(&(value.len() as u64).to_ne_bytes()).await?;
    w.write_all(value).await
}

/// An info answer: who the helper is, and messages for ccache to log (at most 255).
pub(crate) async fn write_info<W: AsyncWrite + Unpin>(
    w: &mut W,
    identity: &str,
    diagnostics: &[String],
) -> io::Result<()> {
    write_msg(w, identity).await?;
    let n = diagnostics.len().min(255);
    w.write_all(&[n as u8]).await?;
    for d in &diagnostics[..n] {
        write_msg(w, d).await?;
    }
    Ok(())
}

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, message: &str) -> io::Result<()> {
    let message = short_message(message);
    w.write_all(&[message.len() as u8]).await?;
    w.write_all(message.as_bytes()).await
}

/// `message` on one line and at most 255 bytes (cut at a character boundary), as the protocol
/// wants messages: short and fit for a log line.
pub(crate) fn short_message(message: &str) -> String {
    let one_line: String = message
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if one_line.len() <= 255 {
        return one_line;
    }
    let mut end = 252;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &one_line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Option<Request>, ReadError> {
        let mut r = bytes;
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn requests_decode() {
        assert_eq!(
            parse(&[0x00, 2, 0xab, 0xcd]).await.unwrap(),
            Some(Request::Get {
                key: vec![0xab, 0xcd]
            })
        );
        let mut put = vec![0x01, 1, 0x07, PUT_OVERWRITE];
        put.extend_from_slice(&3u64.to_ne_bytes());
        put.extend_from_slice(b"abc");
        assert_eq!(
            parse(&put).await.unwrap(),
            Some(Request::Put {
                key: vec![0x07],
                overwrite: true,
                value: b"abc".to_vec()
            })
        );
        assert_eq!(
            parse(&[0x02, 1, 0x09]).await.unwrap(),
            Some(Request::Remove { key: vec![0x09] })
        );
        assert_eq!(parse(&[0x03]).await.unwrap(), Some(Request::Stop));
        assert_eq!(parse(&[0x04]).await.unwrap(), Some(Request::Info));
        assert_eq!(parse(&[]).await.unwrap(), None, "closed between requests");
        assert!(matches!(
            parse(&[0x09]).await,
            Err(ReadError::UnknownRequest(0x09))
        ));
        assert!(matches!(parse(&[0x00, 4, 1]).await, Err(ReadError::Io(_))));
        let mut huge = vec![0x01, 1, 0x07, 0];
        huge.extend_from_slice(&(MAX_VALUE_LEN + 1).to_ne_bytes());
        assert!(matches!(parse(&huge).await, Err(ReadError::TooLarge(_))));
    }

    #[tokio::test]
    async fn responses_encode() {
        let mut out = Vec::new();
        write_greeting(&mut out).await.unwrap();
        assert_eq!(out, [1, 2, 0, 1]);
        let mut out = Vec::new();
        write_value(&mut out, b"xy").await.unwrap();
        let mut want = vec![0];
        want.extend_from_slice(&2u64.to_ne_bytes());
        want.extend_from_slice(b"xy");
        assert_eq!(out, want);
        let mut out = Vec::new();
        write_err(&mut out, "down\nfor now").await.unwrap();
        assert_eq!(out, b"\x02\x0cdown for now");
        let mut out = Vec::new();
        write_info(&mut out, "me", &["a".into()]).await.unwrap();
        assert_eq!(out, b"\x02me\x01\x01a");
    }

    #[test]
    fn messages_are_cut_to_255_bytes_on_a_char_boundary() {
        let long = "é".repeat(300);
        let short = short_message(&long);
        assert!(short.len() <= 255, "{}", short.len());
        assert!(short.ends_with("..."));
        assert_eq!(short_message("a\r\n  b"), "a b");
    }
}

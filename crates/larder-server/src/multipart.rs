//! Bounds on a `multipart/form-data` body, checked as it streams in, before the multipart
//! parser sees it.
//!
//! The parser (multer, through axum) buffers what it cannot yet split: everything before the
//! first boundary, and a part's header block until its blank line. A body without a boundary
//! would be buffered whole. [`guard`] follows the body's structure with a few bytes of state
//! (where the next delimiter or blank line may start) and fails the stream when the bytes
//! before the first boundary, one part's header block or the number of parts pass their
//! bounds; part contents are passed on as they come, whatever their size (the handler bounds
//! those).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use memchr::memmem;

use crate::metrics::Limit;

/// The bounds [`guard`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Bytes before the first boundary.
    pub(crate) preamble: u64,
    /// Bytes of one part's header block.
    pub(crate) header: u64,
    /// Parts.
    pub(crate) parts: usize,
}

/// Which bound tripped, if one did; shared between the guarded stream and its reader.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tripped(Arc<Mutex<Option<Limit>>>);

impl Tripped {
    pub(crate) fn get(&self) -> Option<Limit> {
        self.0.lock().ok().and_then(|g| *g)
    }

    fn set(&self, limit: Limit) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(limit);
        }
    }
}

/// The boundary named by a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

#[derive(Debug)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` closes the body, anything else starts a part.
    AfterDelimiter { got: Vec<u8> },
    /// In a part's header block, up to its blank line.
    Headers,
    /// In a part's content, up to the next delimiter.
    Content,
    /// After the closing delimiter.
    Epilogue,
}

/// The state of the scan over a body.
#[derive(Debug)]
struct Scanner {
    delimiter: Vec<u8>,
    bounds: Bounds,
    state: State,
    /// The last bytes of the previous chunk that may begin the pattern looked for.
    carry: Vec<u8>,
    /// Bytes seen in the current state.
    seen: u64,
    parts: usize,
}

const BLANK_LINE: &[u8] = b"\r\n\r\n";

impl Scanner {
    fn new(boundary: &str, bounds: Bounds) -> Scanner {
        Scanner {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            bounds,
            state: State::Preamble,
            // The first delimiter may open the body: as if a line break came before it.
            carry: b"\r\n".to_vec(),
            seen: 0,
            parts: 0,
        }
    }

    /// Where `pattern` ends in `chunk` (an index into `chunk`), counting a match that began in
    /// the carried bytes; without a match, keep the tail that may begin one.
    fn find(carry: &mut Vec<u8>, chunk: &[u8], pattern: &[u8]) -> Option<usize> {
        if !carry.is_empty() {
            let head = &chunk[..chunk.len().min(pattern.len() - 1)];
            let mut window = carry.clone();
            window.extend_from_slice(head);
            if let Some(i) = memmem::find(&window, pattern) {
                return Some(i + pattern.len() - carry.len());
            }
        }
        if let Some(i) = memmem::find(chunk, pattern) {
            return Some(i + pattern.len());
        }
        let keep = pattern.len() - 1;
        carry.extend_from_slice(&chunk[chunk.len().saturating_sub(keep)..]);
        let excess = carry.len().saturating_sub(keep);
        carry.drain(..excess);
        None
    }

    /// Move to `state` with its starting carry.
    fn enter(&mut self, state: State, carry: &[u8]) {
        self.state = state;
        self.carry.clear();
        self.carry.extend_from_slice(carry);
        self.seen = 0;
    }

    /// Follow `chunk`; the bound it passes, if any.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Limit> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Preamble | State::Content => {
                    let preamble = matches!(self.state, State::Preamble);
                    let delimiter = std::mem::take(&mut self.delimiter);
                    let found = Scanner::find(&mut self.carry, chunk, &delimiter);
                    let slack = delimiter.len() as u64;
                    self.delimiter = delimiter;
                    let used = found.unwrap_or(chunk.len());
                    self.seen += used as u64;
                    if preamble && self.seen > self.bounds.preamble.saturating_add(slack) {
                        return Err(Limit::MultipartPreamble);
                    }
                    chunk = &chunk[used..];
                    if found.is_some() {
                        self.enter(State::AfterDelimiter { got: Vec::new() }, b"");
                    }
                }
                State::AfterDelimiter { got } => {
                    let take = (2 - got.len()).min(chunk.len());
                    got.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if got.len() == 2 {
                        if got == b"--" {
                            self.enter(State::Epilogue, b"");
                        } else {
                            // The line break ending the delimiter line: a part with no
                            // headers has its blank line right after it.
                            self.parts += 1;
                            if self.parts > self.bounds.parts {
                                return Err(Limit::MultipartParts);
                            }
                            self.enter(State::Headers, b"\r\n");
                        }
                    }
                }
                State::Headers => {
                    let found = Scanner::find(&mut self.carry, chunk, BLANK_LINE);
                    let used = found.unwrap_or(chunk.len());
                    self.seen += used as u64;
                    if self.seen > self.bounds.header {
                        return Err(Limit::MultipartHeader);
                    }
                    chunk = &chunk[used..];
                    if found.is_some() {
                        self.enter(State::Content, b"");
                    }
                }
                State::Epilogue => return Ok(()),
            }
        }
        Ok(())
    }
}

/// `body`, failing with an I/O error (and the bound recorded in `tripped`) once it passes one
/// of `bounds` (see the module docs).
pub(crate) fn guard<S, E>(
    body: S,
    boundary: &str,
    bounds: Bounds,
    tripped: Tripped,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let mut scanner = Scanner::new(boundary, bounds);
    let mut failed = false;
    body.map(move |item| {
        if failed {
            return Err(std::io::Error::other("the multipart body is over a bound"));
        }
        let chunk = item.map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Err(limit) = scanner.scan(&chunk) {
            failed = true;
            tripped.set(limit);
            return Err(std::io::Error::other(format!(
                "the multipart body is over a bound ({})",
                limit.label()
            )));
        }
        Ok(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        preamble: 64,
        header: 64,
        parts: 2,
    };

    fn scan_in_pieces(body: &[u8], piece: usize) -> Result<usize, Limit> {
        let mut s = Scanner::new("XyZ", BOUNDS);
        for c in body.chunks(piece) {
            s.scan(c)?;
        }
        Ok(s.parts)
    }

    fn form(parts: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for i in 0..parts {
            body.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(&vec![b'-'; 300]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\nepilogue");
        body
    }

    #[test]
    fn a_form_within_bounds_passes_however_it_is_cut() {
        for piece in [1, 2, 3, 5, 7, 64, 4096] {
            assert_eq!(scan_in_pieces(&form(2), piece), Ok(2), "pieces of {piece}");
        }
        // A part with no headers; a preamble within bounds.
        let body = b"just a preamble\r\n--XyZ\r\n\r\ncontent\r\n--XyZ--";
        assert_eq!(scan_in_pieces(body, 1), Ok(1));
        assert_eq!(scan_in_pieces(body, 100), Ok(1));
    }

    #[test]
    fn each_bound_trips() {
        assert_eq!(scan_in_pieces(&form(3), 5), Err(Limit::MultipartParts));
        let no_boundary = vec![b'x'; 1000];
        assert_eq!(
            scan_in_pieces(&no_boundary, 7),
            Err(Limit::MultipartPreamble)
        );
        let mut long_header = b"--XyZ\r\nContent-Disposition: ".to_vec();
        long_header.extend_from_slice(&[b'a'; 200]);
        assert_eq!(scan_in_pieces(&long_header, 3), Err(Limit::MultipartHeader));
    }

    #[test]
    fn boundaries_parse_from_content_types() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("text/plain; boundary=abc"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }
}

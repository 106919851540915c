//! The part of Python's pickle format and of base64 that wafcache's line protocol uses.
//!
//! wafcache clients send `base64(pickle.dumps([sig, files_from, files_to]))`: a list of a `str`
//! and two lists of `str`, pickled with the client's default protocol (4 on Python 3.8+, but any
//! of 2 to 5 reads the same here). [`decode`] reads that subset (lists, tuples, `str`, `bytes`,
//! memo and framing opcodes) and rejects everything else, such as opcodes that would call Python
//! code. [`encode_str`] writes a `str` byte for byte as `pickle.dumps(text)` does with protocol 4,
//! which is what the seed's worker answers with.

use std::fmt;

/// A decoded pickle value (the subset wafcache sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A Python `str`.
    Str(String),
    /// A Python `bytes` (or a Python 2 `str`).
    Bytes(Vec<u8>),
    /// A Python `list` or `tuple`.
    List(Vec<Value>),
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError(String);

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PickleError {}

fn err<T>(msg: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(msg.into()))
}

/// Nesting deeper than this is refused (materialising a self-referencing list would not end).
const MAX_DEPTH: usize = 32;

/// Opcodes executed per pickle. Every structure the reader builds while parsing (the arena, the
/// stack, the memo, the lists' items) grows by at most a few words per opcode, so this bounds
/// them all; a wafcache request costs about two opcodes per path.
const MAX_OPS: usize = 1 << 20;

/// Bytes the decoded value may take: each value counts its own size plus its bytes. The memo
/// lets one value be referenced many times, and each reference is a copy once materialised, so
/// a few hundred bytes of `[x, x]` nested thirty deep would otherwise ask for gigabytes (a
/// "memo bomb"). A pickle without shared references within [`MAX_OPS`] stays well below this.
const MAX_MATERIALISED: usize = 64 << 20;

/// A list under construction: lists are mutable and may be memoised before `APPENDS` fills
/// them, so they live in an arena and the stack and memo hold indices.
#[derive(Debug, Clone)]
enum Node {
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<usize>),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Node(usize),
    Mark,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| PickleError("pickle data was truncated".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a))
            .or_else(|_| err("pickle length does not fit in memory"))
    }
}

/// Decode one pickle (the subset described in the module docs).
pub(crate) fn decode(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<Slot> = Vec::new();
    let mut memo: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();

    fn push(nodes: &mut Vec<Node>, stack: &mut Vec<Slot>, node: Node) {
        nodes.push(node);
        stack.push(Slot::Node(nodes.len() - 1));
    }
    fn top(stack: &[Slot]) -> Result<usize, PickleError> {
        match stack.last() {
            Some(Slot::Node(i)) => Ok(*i),
            _ => err("pickle stack underflow"),
        }
    }
    fn pop_to_mark(stack: &mut Vec<Slot>) -> Result<Vec<usize>, PickleError> {
        let Some(mark) = stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return err("pickle MARK not found");
        };
        // Everything above the last mark is a value.
        let items = stack[mark + 1..]
            .iter()
            .filter_map(|s| match s {
                Slot::Node(i) => Some(*i),
                Slot::Mark => None,
            })
            .collect();
        stack.truncate(mark);
        Ok(items)
    }
    fn pop_n(stack: &mut Vec<Slot>, n: usize) -> Result<Vec<usize>, PickleError> {
        if stack.len() < n {
            return err("pickle stack underflow");
        }
        let items = stack.split_off(stack.len() - n);
        items
            .into_iter()
            .map(|s| match s {
                Slot::Node(i) => Ok(i),
                Slot::Mark => err("pickle MARK where a value was expected"),
            })
            .collect()
    }
    fn text(b: &[u8]) -> Result<Node, PickleError> {
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Node::Str(s.to_owned())),
            Err(_) => err("pickled str is not valid UTF-8"),
        }
    }

    let mut ops = 0usize;
    loop {
        let op = r.byte()?;
        ops += 1;
        if ops > MAX_OPS {
            return err(format!("pickle holds more than {MAX_OPS} opcodes"));
        }
        match op {
            // PROTO
            0x80 => {
                let v = r.byte()?;
                if v > 5 {
                    return err(format!("unsupported pickle protocol {v}"));
                }
            }
            // FRAME: the length only helps buffered readers; the opcodes follow inline.
            0x95 => {
                r.take(8)?;
            }
            b'.' => {
                let root = top(&stack)?;
                let mut budget = MAX_MATERIALISED;
                return materialise(&nodes, root, 0, &mut budget);
            }
            b'(' => stack.push(Slot::Mark),
            b']' => push(&mut nodes, &mut stack, Node::List(Vec::new())),
            b')' => push(&mut nodes, &mut stack, Node::List(Vec::new())),
            b'l' | b't' => {
                let items = pop_to_mark(&mut stack)?;
                push(&mut nodes, &mut stack, Node::List(items));
            }
            0x85..=0x87 => {
                let items = pop_n(&mut stack, usize::from(op - 0x84))?;
                push(&mut nodes, &mut stack, Node::List(items));
            }
            b'a' => {
                let item = pop_n(&mut stack, 1)?;
                let list = top(&stack)?;
                match &mut nodes[list] {
                    Node::List(v) => v.extend(item),
                    _ => return err("pickle APPEND to a non-list"),
                }
            }
            b'e' => {
                let items = pop_to_mark(&mut stack)?;
                let list = top(&stack)?;
                match &mut nodes[list] {
                    Node::List(v) => v.extend(items),
                    _ => return err("pickle APPENDS to a non-list"),
                }
            }
            // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            0x8c | b'X' | 0x8d => {
                let n = match op {
                    0x8c => usize::from(r.byte()?),
                    b'X' => r.len_u32()?,
                    _ => r.len_u64()?,
                };
                let node = text(r.take(n)?)?;
                push(&mut nodes, &mut stack, node);
            }
            // SHORT_BINBYTES, BINBYTES, BINBYTES8, and Python 2's SHORT_BINSTRING, BINSTRING
            b'C' | b'B' | 0x8e | b'U' | b'T' => {
                let n = match op {
                    b'C' | b'U' => usize::from(r.byte()?),
                    b'B' | b'T' => r.len_u32()?,
                    _ => r.len_u64()?,
                };
                let b = r.take(n)?.to_vec();
                push(&mut nodes, &mut stack, Node::Bytes(b));
            }
            // MEMOIZE, BINPUT, LONG_BINPUT
            0x94 | b'q' | b'r' => {
                let idx = match op {
                    0x94 => memo.len(),
                    b'q' => usize::from(r.byte()?),
                    _ => r.len_u32()?,
                };
                memo.insert(idx, top(&stack)?);
            }
            // BINGET, LONG_BINGET
            b'h' | b'j' => {
                let idx = if op == b'h' {
                    usize::from(r.byte()?)
                } else {
                    r.len_u32()?
                };
                let Some(&node) = memo.get(&idx) else {
                    return err(format!("pickle memo {idx} is not set"));
                };
                stack.push(Slot::Node(node));
            }
            other => {
                return err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {} (only lists and strings are accepted)",
                    r.pos - 1
                ));
            }
        }
    }
}

/// The value of node `i`, each shared reference copied, charging what it allocates to
/// `budget` before allocating it.
fn materialise(
    nodes: &[Node],
    i: usize,
    depth: usize,
    budget: &mut usize,
) -> Result<Value, PickleError> {
    if depth > MAX_DEPTH {
        return err("pickle nests too deeply");
    }
    let Some(node) = nodes.get(i) else {
        return err("pickle refers to a value that does not exist");
    };
    // A list's items charge their own size when they are materialised.
    let payload = match node {
        Node::Str(s) => s.len(),
        Node::Bytes(b) => b.len(),
        Node::List(_) => 0,
    };
    let cost = payload.saturating_add(std::mem::size_of::<Value>());
    *budget = budget.checked_sub(cost).ok_or_else(|| {
        PickleError(format!(
            "pickle expands to more than {} MiB (shared references are copied)",
            MAX_MATERIALISED >> 20
        ))
    })?;
    Ok(match node {
        Node::Str(s) => Value::Str(s.clone()),
        Node::Bytes(b) => Value::Bytes(b.clone()),
        Node::List(items) => Value::List(
            items
                .iter()
                .map(|&j| materialise(nodes, j, depth + 1, budget))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `pickle.dumps(text)` as Python 3.8+ writes it (protocol 4, framed).
pub(crate) fn encode_str(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut body = Vec::with_capacity(b.len() + 16);
    if b.len() < 256 {
        body.push(0x8c);
        body.push(b.len() as u8);
    } else if let Ok(n) = u32::try_from(b.len()) {
        body.push(b'X');
        body.extend_from_slice(&n.to_le_bytes());
    } else {
        body.push(0x8d);
        body.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    // Python writes payloads of 64 KiB and more outside the frame; answers here are shorter
    // (see the caller), so everything sits in one frame like a short `pickle.dumps`.
    body.extend_from_slice(b);
    body.push(0x94);
    body.push(b'.');
    let mut out = Vec::with_capacity(body.len() + 11);
    out.extend_from_slice(&[0x80, 4, 0x95]);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Python's `base64.b64encode`.
pub(crate) fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [18, 12, 6, 0].map(|s| B64[((n >> s) & 63) as usize] as char);
        out.push(chars[0]);
        out.push(chars[1]);
        out.push(if chunk.len() > 1 { chars[2] } else { '=' });
        out.push(if chunk.len() > 2 { chars[3] } else { '=' });
    }
    out
}

/// Standard base64, padding required, as Python's `base64.b64decode(..., validate=True)`.
pub(crate) fn b64decode(text: &[u8]) -> Result<Vec<u8>, PickleError> {
    if !text.len().is_multiple_of(4) {
        return err("base64 length is not a multiple of 4");
    }
    let value = |c: u8| -> Result<u32, PickleError> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return err(format!("invalid base64 character {:?}", char::from(c))),
        }
        .into())
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (i, q) in text.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return err("misplaced base64 padding");
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn ok_is_byte_identical_to_python() {
        // python3 -c 'import pickle; print(pickle.dumps("ok"))'
        assert_eq!(
            encode_str("ok"),
            b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00\x8c\x02ok\x94.".to_vec()
        );
        assert_eq!(b64encode(&encode_str("ok")), "gASVBgAAAAAAAACMAm9rlC4=");
        let long = "x".repeat(300);
        let p = encode_str(&long);
        assert_eq!(
            &p[..16],
            b"\x80\x04\x953\x01\x00\x00\x00\x00\x00\x00X,\x01\x00\x00"
        );
        assert_eq!(decode(&p), Ok(Value::Str(long)));
    }

    #[test]
    fn decodes_a_wafcache_command_protocol_4() {
        let sig = "ab".repeat(32);
        let mut p = b"\x80\x04\x95Z\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c@".to_vec();
        p.extend_from_slice(sig.as_bytes());
        p.extend_from_slice(b"\x94]\x94(\x8c\x04/a/b\x94\x8c\x02/c\x94e]\x94e.");
        assert_eq!(
            decode(&p),
            Ok(Value::List(vec![
                s(&sig),
                Value::List(vec![s("/a/b"), s("/c")]),
                Value::List(vec![]),
            ]))
        );
    }

    #[test]
    fn decodes_protocol_2_with_binput() {
        // pickle.dumps(["s", [], []], protocol=2)
        let p = b"\x80\x02]q\x00(X\x01\x00\x00\x00sq\x01]q\x02]q\x03e.";
        assert_eq!(
            decode(p),
            Ok(Value::List(vec![
                s("s"),
                Value::List(vec![]),
                Value::List(vec![])
            ]))
        );
    }

    #[test]
    fn shared_list_sees_later_appends() {
        // x = []; pickle of [x, x] after memo: ] MEMOIZE ( ] MEMOIZE h1 e .
        let p = b"\x80\x04]\x94(]\x94h\x01e.";
        assert_eq!(
            decode(p),
            Ok(Value::List(vec![Value::List(vec![]), Value::List(vec![])]))
        );
        // A list that contains itself is refused, not looped over.
        let p = b"\x80\x04]\x94h\x00a.";
        assert!(decode(p).is_err());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"\x80",
            b"\x80\x04.",
            b"c__builtin__\neval\n",
            b"\x80\x04\x8c\xff",
            b"\x80\x04X\xff\xff\xff\xff",
            b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x80\x04e.",
            b"\x80\x04h\x05.",
            b"\x80\x04a.",
            b"\x80\x04\x8c\x02\xff\xfe.",
            b"\x80\x09.",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    /// `pickle.dumps(["s", x, []])` byte for byte, where `x = ["a" * leaf]` and then, `levels`
    /// times, `x = [x] * width`: Python's pickler writes each level's list once and refers to it
    /// through the memo (`BINGET`) for its other `width - 1` appearances.
    fn memo_bomb(levels: u8, width: usize, leaf: u8) -> Vec<u8> {
        // Memo 0 is the outer list, 1 the "s", 2 + levels - k the list of level k.
        let mut body = b"]\x94(\x8c\x01s\x94".to_vec();
        for _ in 0..levels {
            body.extend_from_slice(b"]\x94(");
        }
        body.extend_from_slice(&[b']', 0x94, 0x8c, leaf]);
        body.extend(std::iter::repeat_n(b'a', usize::from(leaf)));
        body.extend_from_slice(b"\x94a");
        for k in 1..=levels {
            for _ in 1..width {
                body.extend_from_slice(&[b'h', 2 + levels - (k - 1)]);
            }
            body.push(b'e');
        }
        body.extend_from_slice(b"]\x94e.");
        let mut p = b"\x80\x04\x95".to_vec();
        p.extend_from_slice(&(body.len() as u64).to_le_bytes());
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn memo_bomb_is_refused_by_size_not_by_allocation() {
        let mut python = b"\x80\x04\x95\x9c\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01s\x94]\x94(]\x94(]\x94\x8c\x7f".to_vec();
        python.extend_from_slice(&[b'a'; 127]);
        python.extend_from_slice(b"\x94ah\x04eh\x03e]\x94e.");
        assert_eq!(memo_bomb(2, 2, 127), python, "the pickle Python writes");
        // 329 bytes; 2^29 copies of 127 bytes: over 60 GiB once every reference is copied.
        let bomb = memo_bomb(29, 2, 127);
        assert_eq!(bomb.len(), 329);
        let e = decode(&bomb).expect_err("a memo bomb must be refused");
        assert!(e.to_string().contains("expands to more than"), "{e}");
        // Wide rather than deep: 255 references per level, three levels.
        let e = decode(&memo_bomb(3, 255, 1)).expect_err("a wide memo bomb must be refused");
        assert!(e.to_string().contains("expands to more than"), "{e}");
        // A little sharing is what Python writes for a repeated path, and is fine.
        let ok = decode(&memo_bomb(4, 2, 10)).expect("16 shared copies decode");
        let Value::List(items) = ok else {
            panic!("not a list: {ok:?}")
        };
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn opcode_count_is_bounded() {
        // A million and more empty lists: every one is an opcode, a node and a stack slot.
        let mut p = b"\x80\x04(".to_vec();
        p.extend(std::iter::repeat_n(b']', MAX_OPS + 1));
        p.extend_from_slice(b"l.");
        let e = decode(&p).expect_err("too many opcodes");
        assert!(e.to_string().contains("opcodes"), "{e}");
        // Just below the bound, the same shape decodes.
        let mut p = b"\x80\x04(".to_vec();
        p.extend(std::iter::repeat_n(b']', MAX_OPS - 10));
        p.extend_from_slice(b"l.");
        assert!(decode(&p).is_ok());
    }

    /// The `pickle` fuzz target's corpus (`fuzz/corpus/pickle`), replayed on the stable
    /// toolchain with the target's own checks.
    #[test]
    fn fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pickle");
        let mut n = 0;
        for item in std::fs::read_dir(&dir).expect("the committed corpus") {
            let data = std::fs::read(item.expect("a corpus file").path()).expect("a corpus file");
            let _ = decode(&data);
            if let Ok(bytes) = b64decode(&data) {
                let _ = decode(&bytes);
                let text = b64encode(&bytes);
                assert_eq!(b64decode(text.as_bytes()), Ok(bytes));
            }
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn base64_round_trips_and_rejects_bad_input() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0, 255, 128, 7, 9]] {
            assert_eq!(b64decode(b64encode(data).as_bytes()).as_deref(), Ok(data));
        }
        assert_eq!(b64encode(b"abcd"), "YWJjZA==");
        for bad in [&b"abc"[..], b"ab=c", b"YQ==YQ==", b"Y===", b"a*bc"] {
            assert!(b64decode(bad).is_err(), "{bad:?}");
        }
    }
}

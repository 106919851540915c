//! The least a wafcache worker can do: the seed's file operations without an interpreter.
//!
//! `benches/worker_vs_wafcache.py` runs this next to the seed's `wafcache.py` worker and
//! `larder worker --protocol wafcache` to show what the system calls alone cost on the machine
//! of the day. It speaks the seed's stdin protocol (one base64 pickled `[sig, files_from,
//! files_to]` per line, one base64 pickled `"ok"` back) and does exactly the seed's file cache
//! work (`fcache` in `wafcache.py`), nothing more:
//!
//! - put: `mkdir` of `$WAFCACHE/<sig[:2]>/<sig>` (and its parent), then per file a hard link
//!   to `<dir>/<i>.tmp` and a `rename` to `<dir>/<i>`;
//! - get: per file a hard link of `<dir>/<i>` to `<dest>.tmp` and a `rename` to `<dest>`, then
//!   `utime` of the directory.
//!
//! No trimming, no index, no verification, no error text: a lower bound, not a cache. With
//! `--echo` it answers `"ok"` without touching the file system (the pipe round trip alone).
//! With `--min` each file costs one system call, a hard link (put: to `$WAFCACHE/<sig>.<i>`;
//! get: from there straight to the destination, which must not exist): the least any worker
//! can do that still puts one directory entry per file where it belongs.
//!
//! Only the pickle opcodes Python emits for a list of strings and lists of strings are read;
//! anything else is answered with an error line.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `[sig, files_from, files_to]`.
struct Request {
    sig: Vec<u8>,
    from: Vec<Vec<u8>>,
    to: Vec<Vec<u8>>,
}

/// Read the strings of a pickled `[str, [str...], [str...]]`, by which list they are in.
fn parse(p: &[u8]) -> Option<Request> {
    let mut req = Request {
        sig: Vec::new(),
        from: Vec::new(),
        to: Vec::new(),
    };
    let (mut i, mut lists) = (0usize, 0u8);
    let take = |i: &mut usize, n: usize| -> Option<&[u8]> {
        let s = p.get(*i..i.checked_add(n)?)?;
        *i += n;
        Some(s)
    };
    loop {
        let op = *p.get(i)?;
        i += 1;
        let string = match op {
            0x80 => {
                take(&mut i, 1)?; // PROTO
                continue;
            }
            0x95 => {
                take(&mut i, 8)?; // FRAME
                continue;
            }
            0x94 | 0x28 | 0x61 | 0x65 => continue, // MEMOIZE, MARK, APPEND, APPENDS
            0x5d => {
                lists += 1; // EMPTY_LIST
                continue;
            }
            0x2e => return (lists == 3).then_some(req), // STOP
            0x8c => {
                let n = *take(&mut i, 1)?.first()? as usize;
                take(&mut i, n)?
            }
            0x58 => {
                let n = u32::from_le_bytes(take(&mut i, 4)?.try_into().ok()?) as usize;
                take(&mut i, n)?
            }
            _ => return None,
        };
        match lists {
            1 => req.sig = string.to_vec(),
            2 => req.from.push(string.to_vec()),
            3 => req.to.push(string.to_vec()),
            _ => return None,
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The seed's `atomic_copy` with `copyfun = os.link`.
fn link_then_rename(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = with_suffix(to, ".tmp");
    fs::hard_link(from, &tmp)?;
    fs::rename(&tmp, to)
}

/// `--min`: one hard link per file, nothing else.
fn serve_min(cache: &Path, req: &Request) -> io::Result<()> {
    let name = |i: usize| {
        let mut n = req.sig.clone();
        n.extend_from_slice(format!(".{i}").as_bytes());
        cache.join(OsStr::from_bytes(&n))
    };
    for (i, f) in req.from.iter().enumerate() {
        fs::hard_link(Path::new(OsStr::from_bytes(f)), name(i))?;
    }
    for (i, f) in req.to.iter().enumerate() {
        fs::hard_link(name(i), Path::new(OsStr::from_bytes(f)))?;
    }
    Ok(())
}

fn serve(cache: &Path, req: &Request) -> io::Result<()> {
    let sig = OsStr::from_bytes(&req.sig);
    let fan = OsStr::from_bytes(req.sig.get(..2).unwrap_or(&req.sig));
    let dir = cache.join(fan).join(sig);
    if !req.from.is_empty() {
        // The seed's `os.makedirs(up)`, errors ignored.
        if fs::create_dir(&dir).is_err() {
            let _ = fs::create_dir_all(&dir);
        }
        for (i, f) in req.from.iter().enumerate() {
            link_then_rename(Path::new(OsStr::from_bytes(f)), &dir.join(i.to_string()))?;
        }
    } else {
        for (i, f) in req.to.iter().enumerate() {
            link_then_rename(&dir.join(i.to_string()), Path::new(OsStr::from_bytes(f)))?;
        }
        fs::File::open(&dir)?.set_modified(std::time::SystemTime::now())?;
    }
    Ok(())
}

fn answer(text: &str) -> Vec<u8> {
    // pickle protocol 2 of a short str: PROTO 2, SHORT_BINUNICODE, STOP. At most 255 bytes,
    // cut at a character boundary (the bytes must stay UTF-8).
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = vec![0x80, 2, 0x8c, end as u8];
    p.extend_from_slice(&text.as_bytes()[..end]);
    p.push(0x2e);
    let mut line = STANDARD.encode(p).into_bytes();
    line.push(b'\n');
    line
}

fn main() -> ExitCode {
    let echo = std::env::args().any(|a| a == "--echo");
    let min = std::env::args().any(|a| a == "--min");
    let cache =
        PathBuf::from(std::env::var_os("WAFCACHE").unwrap_or_else(|| "/tmp/wafcache".into()));
    if let Err(e) = fs::create_dir_all(&cache) {
        eprintln!("wafcache-floor: cannot create {}: {e}", cache.display());
        return ExitCode::from(2);
    }
    let ok = answer("ok");
    let (stdin, stdout) = (io::stdin(), io::stdout());
    let (mut input, mut out) = (stdin.lock(), stdout.lock());
    let (mut line, mut raw) = (Vec::new(), Vec::new());
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) => {
                eprintln!("wafcache-floor: reading stdin: {e}");
                return ExitCode::from(2);
            }
        }
        let reply = if echo {
            ok.clone()
        } else {
            raw.clear();
            let text = line.trim_ascii_end();
            match STANDARD
                .decode_vec(text, &mut raw)
                .ok()
                .and_then(|()| parse(&raw))
            {
                None => answer("not a wafcache request"),
                Some(req) => match if min {
                    serve_min(&cache, &req)
                } else {
                    serve(&cache, &req)
                } {
                    Ok(()) => ok.clone(),
                    Err(e) => answer(&e.to_string()),
                },
            }
        };
        if out.write_all(&reply).and_then(|()| out.flush()).is_err() {
            return ExitCode::from(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_pickles() {
        // python3 -c 'import pickle; print(pickle.dumps(["ab12", ["/s/x.o", "/s/y.o"], []]))'
        let p = b"\x80\x04\x95\x24\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x04ab12\x94]\x94(\x8c\x06/s/x.o\x94\x8c\x06/s/y.o\x94e]\x94e.";
        let r = parse(p).expect("parsed");
        assert_eq!(r.sig, b"ab12");
        assert_eq!(r.from, vec![b"/s/x.o".to_vec(), b"/s/y.o".to_vec()]);
        assert!(r.to.is_empty());
        assert!(
            parse(b"\x80\x04K\x01.").is_none(),
            "an int is not a request"
        );
    }
}

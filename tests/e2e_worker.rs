//! `larder worker`: the JSON and wafcache line protocols against the real binary.
//!
//! The protocol checks live in `tests/worker_driver.py`, which speaks wafcache exactly as the
//! seed's client code does; these tests run it. Without python3 they are skipped with a reason,
//! except under CI (`CI` set), where a missing python3 (or urllib3, which the seed imports) fails
//! them. One test here needs no Python:
//! it pipes JSON lines straight into the worker.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{LARDER, Sandbox, code, text};

/// The repository root (this crate is `crates/larder-cli`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `true` when the tests may run; `false` (after saying why) to skip; panics under CI.
fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI (run `cargo xtask test`, which installs it)");
    }
    eprintln!("skipping: {what} is not available");
    false
}

fn python_works(args: &[&str]) -> bool {
    Command::new("python3")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run the driver in `mode` with `extra` arguments, inside a sandbox, and require success.
fn driver(mode: &str, extra: &[&Path]) {
    if !require("python3", python_works(&["-c", "pass"])) {
        return;
    }
    let sandbox = Sandbox::new();
    let out = Command::new("python3")
        .arg(repo_root().join("tests/worker_driver.py"))
        .arg(mode)
        .arg(LARDER)
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &sandbox.home)
        .env("TMPDIR", &sandbox.root)
        .current_dir(&sandbox.work)
        .stdin(Stdio::null())
        .output()
        .expect("running python3");
    assert_eq!(
        code(&out),
        0,
        "worker_driver.py {mode} failed\n--- stdout\n{}\n--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn json_protocol_hits_misses_and_errors() {
    driver("json", &[]);
}

#[test]
fn wafcache_protocol_as_the_seed_client_speaks_it() {
    driver("wafcache", &[]);
}

#[test]
fn background_uploads_wait_abandon_or_fail_quietly() {
    driver("async", &[]);
}

#[test]
fn same_answers_as_the_seed_wafcache_worker() {
    // The seed sits beside the repository (`../shared/seeds/`), not in it: a checkout without it
    // skips this test, also under CI. LARDER_WAFCACHE_SEED names another copy.
    let seed = std::env::var_os("LARDER_WAFCACHE_SEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/seeds/wafcache.py"));
    if !seed.is_file() {
        eprintln!(
            "skipping: the seed wafcache.py is not at {} (set LARDER_WAFCACHE_SEED)",
            seed.display()
        );
        return;
    }
    if !require("python3", python_works(&["-c", "pass"])) {
        return;
    }
    // The seed imports urllib3 at the top; `cargo xtask test` installs it.
    if !require(
        "python3's urllib3 (for the seed wafcache.py)",
        python_works(&["-c", "import urllib3"]),
    ) {
        return;
    }
    driver("compare", &[&seed]);
}

#[test]
fn json_worker_answers_every_line_and_exits_0_at_eof() {
    let sandbox = Sandbox::new();
    sandbox.write(&sandbox.work, "out/a.txt", "hello\n");
    let mut child = sandbox
        .larder()
        .args(["worker"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting larder worker");
    let requests = [
        r#"{"op":"put","key":"k","files":["out"]}"#,
        "not json",
        r#"{"op":"get","key":"k","root":"elsewhere"}"#,
        r#"{"op":"get","key":"missing"}"#,
        r#"{"op":"put","key":"k/../x","files":["out"]}"#,
    ];
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for r in requests {
            writeln!(stdin, "{r}").expect("writing a request");
        }
    }
    let out = child.wait_with_output().expect("waiting for the worker");
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let answers: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every answer is JSON"))
        .collect();
    assert_eq!(answers.len(), requests.len(), "one answer per request");
    assert_eq!(answers[0]["stored"], true, "{}", answers[0]);
    assert_eq!(answers[1]["ok"], false);
    assert_eq!(answers[2]["hit"], true, "{}", answers[2]);
    assert_eq!(
        std::fs::read_to_string(sandbox.work.join("elsewhere/out/a.txt")).ok(),
        Some("hello\n".into())
    );
    assert_eq!(
        (&answers[3]["ok"], &answers[3]["hit"]),
        (&true.into(), &false.into())
    );
    assert_eq!(answers[4]["ok"], false);
}

#[test]
fn over_long_line_is_answered_and_skipped() {
    let sandbox = Sandbox::new();
    let mut child = sandbox
        .larder()
        .args(["worker", "--protocol", "wafcache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting larder worker");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let long = vec![b'A'; 17 << 20];
        stdin.write_all(&long).expect("writing a long line");
        // A wafcache request with neither files to store nor to fetch: [sig, [], []].
        stdin
            .write_all(b"\ngASVDQAAAAAAAABdlCiMAXOUXZRdlGUu\n")
            .expect("writing a request");
    }
    let out = child.wait_with_output().expect("waiting for the worker");
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let answers: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    // base64(pickle.dumps("Invalid command")): the line after the long one is read whole.
    assert_eq!(answers[1], "gASVEwAAAAAAAACMD0ludmFsaWQgY29tbWFuZJQu");
    assert_ne!(answers[0], answers[1]);
}

/// Standard base64 with padding (what wafcache clients put on a line).
fn b64encode(data: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                char::from(B64[((n >> shift) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// Standard base64 decoding of a worker's answer line.
fn b64decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => u32::from(c - b'A'),
        b'a'..=b'z' => u32::from(c - b'a') + 26,
        b'0'..=b'9' => u32::from(c - b'0') + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {text:?}"),
    };
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let pad = quad.iter().filter(|&&c| c == b'=').count();
        let n = quad[..4 - pad]
            .iter()
            .fold(0u32, |n, &c| (n << 6) | value(c))
            << (6 * pad);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// A pickled `str` (protocol 4, `BINUNICODE`), memoised as Python's pickler does.
fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0x94);
}

/// `pickle.dumps([sig, files_from, files_to])` without sharing (what wafcache.py sends).
fn wafcache_request(sig: &str, files_from: &[&str], files_to: &[&str]) -> String {
    let mut p = b"\x80\x04](".to_vec();
    pickle_str(&mut p, sig);
    for files in [files_from, files_to] {
        p.extend_from_slice(b"](");
        for f in files {
            pickle_str(&mut p, f);
        }
        p.push(b'e');
    }
    p.extend_from_slice(b"e.");
    b64encode(&p)
}

/// A 329-byte wafcache request, `pickle.dumps(["s", x, []])` byte for byte as Python writes it
/// after `x = ["a" * 127]; for _ in range(29): x = [x, x]`: each level's list is written once
/// and its second appearance is a memo reference, so decoding that copies every reference
/// makes 2^29 copies of the 127-byte string.
fn memo_bomb() -> Vec<u8> {
    const LEVELS: u8 = 29;
    // Memo 0 is the outer list, 1 the "s", 2 + LEVELS - k the list of level k.
    let mut body = b"]\x94(\x8c\x01s\x94".to_vec();
    for _ in 0..LEVELS {
        body.extend_from_slice(b"]\x94(");
    }
    body.extend_from_slice(&[b']', 0x94, 0x8c, 127]);
    body.extend_from_slice(&[b'a'; 127]);
    body.extend_from_slice(b"\x94a");
    for k in 1..=LEVELS {
        body.extend_from_slice(&[b'h', 2 + LEVELS - (k - 1), b'e']);
    }
    body.extend_from_slice(b"]\x94e.");
    let mut p = b"\x80\x04\x95".to_vec();
    p.extend_from_slice(&(body.len() as u64).to_le_bytes());
    p.extend_from_slice(&body);
    p
}

#[test]
fn pickle_memo_bomb_is_an_error_answer_and_the_worker_serves_on() {
    let sandbox = Sandbox::new();
    let built = sandbox.write(&sandbox.work, "build/a.o", "object a\n");
    let restored = sandbox.work.join("elsewhere/a.o");
    let sig = "ab".repeat(32);
    let bomb = memo_bomb();
    assert_eq!(bomb.len(), 329);
    let mut cmd = sandbox.larder();
    cmd.args(["worker", "--protocol", "wafcache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // At most 1 GiB of address space: the bomb decoded without a bound asks for far more and
    // the worker aborts at once, instead of taking the machine's memory first.
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("starting larder worker");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let requests = [
            b64encode(&bomb),
            wafcache_request(&sig, &[built.to_str().expect("UTF-8 path")], &[]),
            wafcache_request(&sig, &[], &[restored.to_str().expect("UTF-8 path")]),
        ];
        for r in requests {
            writeln!(stdin, "{r}").expect("writing a request");
        }
    }
    let out = child.wait_with_output().expect("waiting for the worker");
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let answers: Vec<Vec<u8>> = text(&out.stdout).lines().map(b64decode).collect();
    assert_eq!(answers.len(), 3, "one answer per request: {answers:?}");
    let first = text(&answers[0]);
    assert!(
        first.contains("larder: bad request") && first.contains("expands to more than"),
        "{first}"
    );
    // base64(pickle.dumps("ok")), as the seed answers.
    let ok = b64decode("gASVBgAAAAAAAACMAm9rlC4=");
    assert_eq!(
        answers[1],
        ok,
        "the put after the bomb: {}",
        text(&answers[1])
    );
    assert_eq!(
        answers[2],
        ok,
        "the get after the bomb: {}",
        text(&answers[2])
    );
    assert_eq!(
        std::fs::read_to_string(&restored).ok(),
        Some("object a\n".into())
    );
}

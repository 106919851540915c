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

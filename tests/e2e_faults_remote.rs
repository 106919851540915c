//! Remote faults for real (issue 16 item 7), seen by the real `larder exec`: a remote (a real
//! `larder serve`, or SeaweedFS over S3) behind a TCP proxy the test controls that hangs or
//! resets connections, at once or in the middle of a transfer, and SeaweedFS killed with
//! `SIGKILL` in the middle of an upload and of a download, then restarted on its data.
//!
//! What must hold: the build goes on as a miss (the task runs, exit 0) with one warning, within
//! the configured time-out plus a margin (the proxy would hang for ever); nothing partial is
//! ever restored; once the remote is back, a later run stores and the next one hits. SeaweedFS
//! tests skip without `weed`, except under CI.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{Sandbox, assert_exit, count_lines, text};
use larder_testservers::{Proxy, ProxyMode, SeaweedFs};

/// `LARDER_REMOTE_TIMEOUT` for these runs.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What a run may take besides the time-out: the task, hashing and storing 8 MiB locally, and
/// a busy 2-core machine. A remote that is not cut off by the time-out hangs for good.
const MARGIN: Duration = Duration::from_secs(10);
/// The task's output: large enough to be a blob streamed in many chunks (and an S3 multipart
/// upload), so that a proxy can cut it part-way.
const BIG: usize = 8 << 20;

/// The remote being tested: where larder reaches it (through the proxy) and its credentials.
struct Remote {
    store: String,
    env: Vec<(&'static str, String)>,
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A checkout at `dir` whose task copies a `BIG`-byte input (from `seed`) to `big.out` and
/// logs each real run to `runs`. Returns the exec arguments and the input bytes.
fn checkout(dir: &Path, runs: &Path, seed: u64) -> (Vec<String>, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("checkout dir");
    let data = noise(seed, BIG);
    std::fs::File::create(dir.join("big.in"))
        .and_then(|mut f| f.write_all(&data))
        .expect("writing big.in");
    let script = format!("echo run >> {}; cp big.in big.out", runs.display());
    let args = [
        "exec", "--in", "big.in", "--out", "big.out", "--", "sh", "-c", &script,
    ]
    .map(String::from)
    .to_vec();
    (args, data)
}

/// `larder exec` in `dir` with the local cache in front of `remote` (the default), spawned.
fn spawn_exec(sb: &Sandbox, dir: &Path, remote: &Remote, args: &[String]) -> std::process::Child {
    let mut cmd = sb.larder_in(dir);
    cmd.env_remove("LARDER_STORE")
        .env("LARDER_REMOTE_TIMEOUT", TIMEOUT.as_secs().to_string())
        .args(["--store", &remote.store])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &remote.env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("running larder exec")
}

/// One run to its end: its output and how long it took.
fn exec(sb: &Sandbox, dir: &Path, remote: &Remote, args: &[String]) -> (Output, Duration) {
    let started = Instant::now();
    let out = spawn_exec(sb, dir, remote, args)
        .wait_with_output()
        .expect("waiting for larder exec");
    (out, started.elapsed())
}

/// Empty the local cache, so that the next run goes to the remote.
fn forget_locally(sb: &Sandbox) {
    let local = sb.home.join(".cache").join("larder");
    if local.exists() {
        std::fs::remove_dir_all(&local).expect("removing the local cache");
    }
}

/// How a run ended, checked: exit 0 and `big.out` equal to the input, always (a hit restores it
/// whole, a miss runs the task). Returns whether the task ran and how many warnings it printed.
///
/// Not counted: larder-s3's warning that it could not abort a multipart upload a fault cut
/// short (with the server gone it cannot; the parts stay in the bucket until a lifecycle rule
/// removes them, which that warning is there to say).
#[track_caller]
fn check(out: &Output, dir: &Path, data: &[u8], runs: &Path, runs_before: usize) -> (bool, usize) {
    assert_exit(out, 0);
    let got = std::fs::read(dir.join("big.out")).expect("big.out exists after the run");
    assert!(
        got == data,
        "big.out differs from the input ({} bytes)",
        got.len()
    );
    let ran = count_lines(runs) > runs_before;
    let warnings = text(&out.stderr)
        .lines()
        .filter(|l| l.contains("warning") && !l.contains("cannot abort the upload"))
        .count();
    (ran, warnings)
}

/// A run that must be a miss with exactly one warning, within the time-out plus the margin.
#[track_caller]
fn assert_miss_with_one_warning(
    what: &str,
    out: &Output,
    took: Duration,
    ran: bool,
    warnings: usize,
) {
    let err = text(&out.stderr);
    assert!(ran, "{what}: the task did not run\n{err}");
    assert_eq!(warnings, 1, "{what}: one warning\n{err}");
    assert!(
        err.contains("larder: warning:"),
        "{what}: larder's warning\n{err}"
    );
    assert!(
        took < TIMEOUT + MARGIN,
        "{what}: took {took:?} with a {TIMEOUT:?} time-out\n{err}"
    );
    eprintln!("{what}: a miss with one warning in {took:.2?}");
}

/// The faults every remote is put through, one checkout each, all through `proxy`.
fn hang_and_reset(sb: &Sandbox, proxy: &Proxy, remote: &Remote, name: &str) {
    let runs = sb.root.join(format!("{name}-runs.log"));
    let at = |n: &str| sb.root.join(format!("{name}-{n}"));

    // Accepts and never answers; resets at once.
    for (i, mode) in [ProxyMode::Hang, ProxyMode::Reset].into_iter().enumerate() {
        proxy.set_mode(mode);
        let dir = at(&format!("fresh-{i}"));
        let (args, data) = checkout(&dir, &runs, 100 + i as u64);
        let before = count_lines(&runs);
        let (out, took) = exec(sb, &dir, remote, &args);
        let (ran, warnings) = check(&out, &dir, &data, &runs, before);
        assert_miss_with_one_warning(&format!("{name} {mode:?}"), &out, took, ran, warnings);
    }

    // An entry the remote holds, read back through a connection cut or stalled part-way
    // through its blob: a miss, nothing partial restored.
    proxy.set_mode(ProxyMode::Pass);
    let (args, data) = checkout(&at("stored"), &runs, 200);
    let (out, _) = exec(sb, &at("stored"), remote, &args);
    assert_exit(&out, 0);
    for (i, mode) in [
        ProxyMode::ResetAfter(1 << 20),
        ProxyMode::HangAfter(1 << 20),
    ]
    .into_iter()
    .enumerate()
    {
        forget_locally(sb);
        proxy.set_mode(mode);
        let dir = at(&format!("download-{i}"));
        checkout(&dir, &runs, 200);
        let before = count_lines(&runs);
        let (out, took) = exec(sb, &dir, remote, &args);
        let (ran, warnings) = check(&out, &dir, &data, &runs, before);
        let what = format!("{name} download {mode:?}");
        assert_miss_with_one_warning(&what, &out, took, ran, warnings);
    }

    // A new entry whose upload is cut part-way: a warning; the remote never shows a partial
    // entry (the next run, remote healthy, is a miss or a whole hit), and then it hits.
    forget_locally(sb);
    proxy.set_mode(ProxyMode::ResetAfter(1 << 20));
    let (args, data) = checkout(&at("upload"), &runs, 300);
    let before = count_lines(&runs);
    let (out, took) = exec(sb, &at("upload"), remote, &args);
    let (ran, warnings) = check(&out, &at("upload"), &data, &runs, before);
    assert_miss_with_one_warning(&format!("{name} upload reset"), &out, took, ran, warnings);
    proxy.set_mode(ProxyMode::Pass);
    for (i, must_hit) in [(0, false), (1, true)] {
        forget_locally(sb);
        let dir = at(&format!("after-upload-{i}"));
        checkout(&dir, &runs, 300);
        let before = count_lines(&runs);
        let (out, _) = exec(sb, &dir, remote, &args);
        let (ran, warnings) = check(&out, &dir, &data, &runs, before);
        assert_eq!(warnings, 0, "{name}: {}", text(&out.stderr));
        if must_hit {
            assert!(!ran, "{name}: the entry stored by the run before is a hit");
        }
    }
}

#[test]
fn a_larder_server_that_hangs_or_resets_is_a_miss_within_the_time_out() {
    let sb = Sandbox::new();
    let log = sb.root.join("serve.log");
    let log_arg = log.to_str().expect("utf-8 path");
    let served = Served::start(&sb, &sb.root.join("served"), &["--log-file", log_arg]);
    let target = served
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    let proxy = Proxy::start(target).expect("proxy");
    let remote = Remote {
        store: proxy.url(),
        env: Vec::new(),
    };
    hang_and_reset(&sb, &proxy, &remote, "serve");

    // A new entry whose upload the server stops taking part-way (the connection stays open):
    // the upload is given up once nothing more is taken for the time-out.
    forget_locally(&sb);
    proxy.set_mode(ProxyMode::HangAfter(1 << 20));
    let runs = sb.root.join("serve-runs.log");
    let dir = sb.root.join("serve-upload-stalled");
    let (args, data) = checkout(&dir, &runs, 400);
    let before = count_lines(&runs);
    let (out, took) = exec(&sb, &dir, &remote, &args);
    let (ran, warnings) = check(&out, &dir, &data, &runs, before);
    assert_miss_with_one_warning("serve upload stalled", &out, took, ran, warnings);
}

fn s3_remote(proxy: &Proxy, s3: &SeaweedFs, name: &str) -> Remote {
    Remote {
        store: format!("minio://{}/{}/e2e/{name}", proxy.addr(), s3.bucket()),
        env: vec![
            ("LARDER_S3_ACCESS_KEY", s3.access_key().to_owned()),
            ("LARDER_S3_SECRET_KEY", s3.secret_key().to_owned()),
        ],
    }
}

fn s3_proxy(s3: &SeaweedFs) -> Proxy {
    Proxy::start(s3.host_port().parse().expect("S3 address")).expect("proxy")
}

#[test]
fn seaweedfs_that_hangs_or_resets_is_a_miss_within_the_time_out() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let proxy = s3_proxy(&s3);
    hang_and_reset(&sb, &proxy, &s3_remote(&proxy, &s3, "faults"), "s3");
}

/// Run `args` in `dir` and kill SeaweedFS in the middle of the run's transfer: the proxy stalls
/// every connection once `bytes` have gone through it, so the transfer cannot finish before the
/// kill however fast it is; once SeaweedFS is dead, the proxy closes what it holds (as the dead
/// server's connections would be) and passes new connections on (refused by the dead address).
/// The run's output.
fn kill_mid_transfer(
    sb: &Sandbox,
    s3: &mut SeaweedFs,
    proxy: &Proxy,
    remote: &Remote,
    dir: &Path,
    args: &[String],
    bytes: u64,
) -> Output {
    let stalled = proxy.stalled();
    proxy.set_mode(ProxyMode::HangAfter(bytes));
    let child = spawn_exec(sb, dir, remote, args);
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.stalled() == stalled {
        assert!(
            Instant::now() < deadline,
            "the transfer never reached {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.kill();
    proxy.set_mode(ProxyMode::Pass);
    proxy.close_all();
    child.wait_with_output().expect("waiting for larder exec")
}

#[test]
fn seaweedfs_killed_mid_transfer_is_a_miss_and_once_restarted_stores_and_hits() {
    let Some(mut s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let proxy = s3_proxy(&s3);
    let remote = s3_remote(&proxy, &s3, "killed");
    let runs = sb.root.join("runs.log");
    let at = |n: &str| -> PathBuf { sb.root.join(n) };

    // Killed in the middle of the upload of a new entry.
    let (args, data) = checkout(&at("upload"), &runs, 1);
    let out = kill_mid_transfer(&sb, &mut s3, &proxy, &remote, &at("upload"), &args, 2 << 20);
    let (ran, warnings) = check(&out, &at("upload"), &data, &runs, 0);
    assert!(ran && warnings == 1, "{}", text(&out.stderr));

    // Restarted on the same data: no partial entry (a miss, or a whole hit), then stored, then
    // a hit.
    s3.restart();
    for (i, must_hit) in [(0, false), (1, true)] {
        forget_locally(&sb);
        let dir = at(&format!("after-upload-{i}"));
        checkout(&dir, &runs, 1);
        let before = count_lines(&runs);
        let (out, _) = exec(&sb, &dir, &remote, &args);
        let (ran, warnings) = check(&out, &dir, &data, &runs, before);
        assert_eq!(warnings, 0, "{}", text(&out.stderr));
        if must_hit {
            assert!(!ran, "a hit after the restart");
        }
    }

    // Killed in the middle of the download of that entry: a miss, the task runs.
    forget_locally(&sb);
    checkout(&at("download"), &runs, 1);
    let before = count_lines(&runs);
    let out = kill_mid_transfer(
        &sb,
        &mut s3,
        &proxy,
        &remote,
        &at("download"),
        &args,
        2 << 20,
    );
    let (ran, warnings) = check(&out, &at("download"), &data, &runs, before);
    assert!(ran && warnings == 1, "{}", text(&out.stderr));

    // Restarted again: the entry is still there, whole.
    s3.restart();
    forget_locally(&sb);
    checkout(&at("after-download"), &runs, 1);
    let before = count_lines(&runs);
    let (out, _) = exec(&sb, &at("after-download"), &remote, &args);
    let (ran, warnings) = check(&out, &at("after-download"), &data, &runs, before);
    assert!(!ran && warnings == 0, "{}", text(&out.stderr));
}

//! `larder serve` end to end: the real binary serving a directory, real `larder exec` clients
//! reaching it over `http://`, one server per directory, graceful stop on SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{LARDER, Sandbox, assert_exit, count_lines, text};

/// The same checkout at `dir`: one input, a task that logs each real run to `runs`.
fn checkout(sb: &Sandbox, dir: &Path, runs: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("checkout dir");
    sb.write(dir, "in.txt", "the same input\n");
    let script = format!(
        "echo run >> {}; tr a-z A-Z < in.txt > out.txt",
        runs.display()
    );
    [
        "exec", "--in", "in.txt", "--out", "out.txt", "--", "sh", "-c", &script,
    ]
    .map(String::from)
    .to_vec()
}

fn exec_with_store(sb: &Sandbox, dir: &Path, store: &str, args: &[String]) -> std::process::Output {
    sb.larder_in(dir)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", store])
        .args(args)
        .output()
        .expect("running larder exec")
}

#[test]
fn two_checkouts_share_hits_through_the_server() {
    let sb = Sandbox::new();
    let served = Served::start(&sb, &sb.root.join("server-cache"), &[]);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);

    assert_exit(&exec_with_store(&sb, &a, &served.url, &args), 0);
    assert_eq!(count_lines(&runs), 1, "first build runs the task");
    let hit = exec_with_store(&sb, &b, &served.url, &args);
    assert_exit(&hit, 0);
    assert_eq!(
        count_lines(&runs),
        1,
        "second checkout restores from the server"
    );
    let out = std::fs::read_to_string(b.join("out.txt")).expect("restored output");
    assert_eq!(out, "THE SAME INPUT\n");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn the_server_records_a_trace_that_the_simulator_replays() {
    let sb = Sandbox::new();
    let trace = sb.root.join("server.trace");
    let trace_arg = trace.to_str().expect("UTF-8 path");
    let served = Served::start(&sb, &sb.root.join("server-cache"), &["--trace", trace_arg]);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);
    for dir in [&a, &b, &a] {
        assert_exit(&exec_with_store(&sb, dir, &served.url, &args), 0);
    }
    assert_eq!(count_lines(&runs), 1);
    assert_eq!(served.terminate(), Some(0));
    let recorded = std::fs::read_to_string(&trace).expect("the server wrote the trace");
    let ops: Vec<&str> = recorded
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next())
        .collect();
    assert_eq!(ops, ["get-miss", "put", "get-hit", "get-hit"], "{recorded}");
    let out = sb.run(["policy", "simulate", "--trace", trace_arg, "--json"]);
    assert_exit(&out, 0);
    let results: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("simulate --json prints JSON");
    assert_eq!(results[0]["requests"], 3, "{results}");
}

/// `larder serve` asks the configured admission policy on puts from any client.
#[cfg(feature = "policy")]
#[test]
fn the_server_keeps_out_what_its_admission_policy_refuses() {
    let Some(cap) = larder_policy::testing::built_policy("size-cap") else {
        return;
    };
    let sb = Sandbox::new();
    let mut cmd = sb.larder();
    cmd.env("LARDER_ADMISSION_POLICY", &cap)
        .env("LARDER_ADMISSION_CONFIG", "max-bytes=1");
    let served = Served::spawn(cmd, &sb.root.join("server-cache"), &[]);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    for _ in 0..2 {
        assert_exit(&exec_with_store(&sb, &a, &served.url, &args), 0);
    }
    assert_eq!(
        count_lines(&runs),
        2,
        "a refused entry is not stored, so both run"
    );
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_dead_server_is_a_miss_and_a_warning_not_a_failed_build() {
    let sb = Sandbox::new();
    // Bind and drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let out = exec_with_store(&sb, &a, &format!("http://127.0.0.1:{port}"), &args);
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    let err = text(&out.stderr);
    assert!(err.contains("warning"), "expected a warning: {err}");
}

#[test]
fn one_server_per_directory_and_a_pid_file_while_it_runs() {
    let sb = Sandbox::new();
    let dir: PathBuf = sb.root.join("server-cache");
    let pid_file = sb.root.join("larder.pid");
    let pid_arg = pid_file.display().to_string();
    let served = Served::start(&sb, &dir, &["--pid-file", &pid_arg]);
    let pid = std::fs::read_to_string(&pid_file).expect("pid file while serving");
    assert_eq!(pid.trim(), served.child.id().to_string());

    let second = Command::new(LARDER)
        .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .env("HOME", &sb.home)
        .stdin(Stdio::null())
        .output()
        .expect("running a second server");
    assert_exit(&second, 2);
    let err = text(&second.stderr);
    assert!(
        err.contains("already serves") && err.contains(pid.trim()),
        "second server's error should name the first: {err}"
    );

    assert_eq!(served.terminate(), Some(0));
    assert!(!pid_file.exists(), "pid file removed on a clean stop");
    // The directory is free again.
    let again = Served::start(&sb, &dir, &[]);
    assert_eq!(again.terminate(), Some(0));
}

#[test]
fn a_replica_server_uploads_to_its_upstream() {
    let sb = Sandbox::new();
    let origin = Served::start(&sb, &sb.root.join("origin"), &[]);
    let replica = Served::start(
        &sb,
        &sb.root.join("replica"),
        &["--upstream", &origin.url, "--upload-workers", "2"],
    );
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);
    // Built through the replica ...
    assert_exit(&exec_with_store(&sb, &a, &replica.url, &args), 0);
    assert_eq!(count_lines(&runs), 1);
    // ... and found at the origin once the background upload is done.
    // (No pushes from b: a miss there must not store the entry itself.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sb
            .larder_in(&b)
            .env("LARDER_NO_LOCAL", "1")
            .args(["--store", &origin.url])
            .args(&args)
            .env("LARDER_NO_PUSH", "1")
            .output()
            .expect("running larder exec");
        assert_exit(&out, 0);
        if std::fs::read_to_string(b.join("out.txt")).is_ok() && count_lines(&runs) == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never uploaded the entry"
        );
        // A miss ran the task: undo it and try again.
        std::fs::write(&runs, "run\n").expect("reset the run log");
        let _ = std::fs::remove_file(b.join("out.txt"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(replica.terminate(), Some(0));
    assert_eq!(origin.terminate(), Some(0));
}

#[test]
fn https_and_a_push_token_from_the_command_line() {
    let sb = Sandbox::new();
    // A self-signed certificate for 127.0.0.1, trusted through LARDER_CA_FILE.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let cert_file = sb.root.join("cert.pem");
    let key_file = sb.root.join("key.pem");
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let auth = sb.root.join("auth.txt");
    std::fs::write(&auth, "token 0123456789abcdef0123\n").expect("write auth file");
    let (c, k, a) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
        auth.display().to_string(),
    );
    let served = Served::start(
        &sb,
        &sb.root.join("server-cache"),
        &["--tls-cert", &c, "--tls-key", &k, "--auth-file", &a],
    );
    assert!(served.url.starts_with("https://"), "{}", served.url);
    let runs = sb.root.join("runs.log");
    let (a_dir, b_dir) = (sb.root.join("a"), sb.root.join("b"));
    let args = checkout(&sb, &a_dir, &runs);
    checkout(&sb, &b_dir, &runs);
    let exec = |dir: &Path, token: Option<&str>| {
        let mut cmd = sb.larder_in(dir);
        cmd.env("LARDER_NO_LOCAL", "1")
            .args(["--store", &served.url])
            .args(&args)
            .env("LARDER_CA_FILE", &cert_file);
        if let Some(t) = token {
            cmd.env("LARDER_TOKEN", t);
        }
        cmd.output().expect("running larder exec")
    };
    // Without the token the push is refused: a warning, and the build still succeeds.
    let out = exec(&a_dir, None);
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert_exit(&exec(&b_dir, None), 0);
    assert_eq!(count_lines(&runs), 2, "nothing was stored, so both ran");
    // With the token: stored once, then a hit elsewhere.
    std::fs::write(&runs, "").expect("reset the run log");
    let _ = std::fs::remove_file(b_dir.join("out.txt"));
    assert_exit(&exec(&a_dir, Some("0123456789abcdef0123")), 0);
    assert_exit(&exec(&b_dir, None), 0);
    assert_eq!(count_lines(&runs), 1, "the second checkout hit over https");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn sigterm_while_storing_outputs_stops_larder() {
    let sb = Sandbox::new();
    // A server that answers every lookup with a miss and never answers a write: storing the
    // outputs hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut conn = conn;
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    buf.clear();
                    while !buf.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => buf.push(byte[0]),
                            _ => return,
                        }
                    }
                    if !buf.starts_with(b"GET ") {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    let miss = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                    if conn.write_all(miss).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let mut child = sb
        .larder_in(&a)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", &url])
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting larder exec");
    // Wait until the command has run (larder is then looking up or storing).
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_lines(&runs) == 0 {
        assert!(Instant::now() < deadline, "the wrapped command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("larder ignored SIGTERM while storing outputs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// The body of `GET path` from the server at `url` (`http://HOST:PORT`).
fn http_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").expect("plain http");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn the_background_scrub_removes_a_blob_damaged_on_disk() {
    let sb = Sandbox::new();
    let mut big = vec![0u8; 400_000];
    let mut x: u32 = 99;
    for b in &mut big {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 24) as u8;
    }
    sb.write(&sb.work, "big.bin", &big);
    assert_exit(&sb.run(["put", "k", "big.bin"]), 0);
    let blob = std::fs::read_dir(sb.cache.join("blobs"))
        .expect("blobs/")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("fan-out dir").flatten())
        .map(|f| f.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == big.len() as u64))
        .expect("the raw blob");
    let mut perms = std::fs::metadata(&blob).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("chmod");
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[1234] ^= 4;
    std::fs::write(&blob, bytes).expect("write");

    let bad = sb
        .larder()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--scrub-rate",
            "quick",
            "--dir",
        ])
        .arg(&sb.cache)
        .output()
        .expect("larder serve");
    assert_exit(&bad, 2);
    assert!(
        text(&bad.stderr).contains("--scrub-rate"),
        "{}",
        text(&bad.stderr)
    );

    // The first pass starts with the server.
    let served = Served::start(&sb, &sb.cache, &["--scrub-rate", "1GiB/s"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http_get(&served.url, "/metrics");
        if metrics.lines().any(|l| l == "larder_scrub_corrupt_total 1") {
            assert!(
                metrics.contains("larder_scrub_rate_bytes 1073741824"),
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no damaged blob found: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!blob.exists(), "removed");
    let status = http_get(&served.url, "/status");
    assert!(status.contains("<h2>Integrity</h2>"), "{status}");
    assert_eq!(served.terminate(), Some(0));
    assert_exit(&sb.run(["get", "k"]), 1);

    let off = Served::start(&sb, &sb.cache, &["--scrub-rate", "off"]);
    let metrics = http_get(&off.url, "/metrics");
    assert!(metrics.contains("larder_blob_reads_total"), "{metrics}");
    assert!(!metrics.contains("larder_scrub_"), "{metrics}");
    assert_eq!(off.terminate(), Some(0));
}

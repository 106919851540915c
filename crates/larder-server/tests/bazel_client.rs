//! The real Bazel (Debian's bazel-bootstrap, Bazel 4.2) against the server: a build with an
//! empty local output base finds the action's result in `--remote_cache`, also below a
//! sub-path and when pushing needs a bearer token. Skipped when bazel is not installed, except
//! under CI (`cargo xtask test` installs it), where that is a failure.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

fn have_bazel() -> bool {
    Command::new("bazel")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `bazel build //:g` in `ws` with its own output root; returns Bazel's stderr (its report).
fn build(ws: &Path, root: &Path, remote: &str, extra: &[&str]) -> String {
    let out = Command::new("bazel")
        .arg(format!("--output_user_root={}", root.display()))
        .arg("--batch")
        .arg("build")
        .arg("//:g")
        .arg(format!("--remote_cache={remote}"))
        .args(extra)
        .current_dir(ws)
        .output()
        .expect("running bazel");
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bazel failed:\n{report}");
    report
}

async fn build_async(ws: &Path, root: &Path, remote: String, extra: &[&str]) -> String {
    let (ws, root) = (ws.to_owned(), root.to_owned());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        build(&ws, &root, &remote, &extra)
    })
    .await
    .expect("bazel task")
}

fn workspace(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).expect("workspace dir");
    std::fs::write(dir.join("WORKSPACE"), "").expect("WORKSPACE");
    std::fs::write(
        dir.join("BUILD"),
        format!("genrule(name = \"g\", outs = [\"out.txt\"], cmd = \"echo {text} > $@\")\n"),
    )
    .expect("BUILD");
}

#[tokio::test(flavor = "multi_thread")]
async fn real_bazel_gets_remote_cache_hits() {
    if !have_bazel() {
        assert!(
            std::env::var_os("CI").is_none(),
            "bazel not installed: `cargo xtask test` installs bazel-bootstrap"
        );
        eprintln!("bazel not installed; skipping");
        return;
    }
    let token = "0123456789abcdef0123";
    let access = larder_server::Access::open().with_token(token);
    let open = TestServer::start().await;
    let guarded = TestServer::start_with(|c| c.with_access(access)).await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let header = format!("--remote_header=Authorization=Bearer {token}");
    for (name, remote, extra) in [
        ("plain", open.url("/bazel"), vec![]),
        ("subpath", open.url("/bazel/team-a"), vec![]),
        ("token", guarded.url("/bazel"), vec![header.as_str()]),
    ] {
        let ws = tmp.path().join(name);
        workspace(&ws, &format!("hello-{name}"));
        let first = build_async(
            &ws,
            &tmp.path().join(format!("{name}-1")),
            remote.clone(),
            &extra,
        )
        .await;
        assert!(!first.contains("remote cache hit"), "{name}: {first}");
        // A fresh output root has nothing locally: the result must come from the server.
        let root2 = tmp.path().join(format!("{name}-2"));
        let second = build_async(&ws, &root2, remote.clone(), &extra).await;
        assert!(second.contains("1 remote cache hit"), "{name}: {second}");
        let bin = Command::new("bazel")
            .arg(format!("--output_user_root={}", root2.display()))
            .args(["--batch", "info", "bazel-bin"])
            .current_dir(&ws)
            .output()
            .expect("bazel info");
        let bin = String::from_utf8_lossy(&bin.stdout).trim().to_owned();
        let got = std::fs::read_to_string(Path::new(&bin).join("out.txt")).expect("output");
        assert_eq!(got, format!("hello-{name}\n"));
    }
    // Without the token, the guarded server refuses Bazel's uploads (Bazel warns, builds on).
    let ws = tmp.path().join("no-token");
    workspace(&ws, "hello-no-token");
    let _ = build_async(&ws, &tmp.path().join("nt-1"), guarded.url("/bazel"), &[]).await;
    let second = build_async(&ws, &tmp.path().join("nt-2"), guarded.url("/bazel"), &[]).await;
    assert!(!second.contains("remote cache hit"), "{second}");
}

//! The real Bazel (Debian's bazel-bootstrap, Bazel 4.2) against the server over gRPC
//! (`--remote_cache=grpc://HOST:PORT`, HTTP/2 with prior knowledge on the HTTP port): a build
//! with an empty output base gets its action as a remote cache hit, also with an instance name,
//! with a bearer token required for writes, and after an upload through the HTTP protocol.
//! Skipped when bazel is not installed, except under CI (`cargo xtask test` installs it).

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
async fn build(ws: &Path, root: &Path, args: Vec<String>) -> String {
    let (ok, report) = try_build(ws, root, args).await;
    assert!(ok, "bazel failed:\n{report}");
    report
}

/// `bazel build //:g`: whether it succeeded, and its report.
async fn try_build(ws: &Path, root: &Path, args: Vec<String>) -> (bool, String) {
    let (ws, root) = (ws.to_owned(), root.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = Command::new("bazel")
            .arg(format!("--output_user_root={}", root.display()))
            .args(["--batch", "build", "//:g"])
            .args(&args)
            .current_dir(&ws)
            .output()
            .expect("running bazel");
        let report = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), report)
    })
    .await
    .expect("bazel task")
}

fn workspace(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).expect("workspace dir");
    std::fs::write(dir.join("WORKSPACE"), "").expect("WORKSPACE");
    std::fs::write(
        dir.join("BUILD"),
        format!(
            "genrule(name = \"g\", outs = [\"out.txt\", \"big.bin\"], \
             cmd = \"echo {text} > $(location out.txt); head -c 300000 /dev/zero | tr '\\\\\\\\0' x > $(location big.bin)\")\n"
        ),
    )
    .expect("BUILD");
}

fn output(ws: &Path, root: &Path) -> String {
    let bin = Command::new("bazel")
        .arg(format!("--output_user_root={}", root.display()))
        .args(["--batch", "info", "bazel-bin"])
        .current_dir(ws)
        .output()
        .expect("bazel info");
    let bin = String::from_utf8_lossy(&bin.stdout).trim().to_owned();
    std::fs::read_to_string(Path::new(&bin).join("out.txt")).expect("output")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_bazel_gets_grpc_remote_cache_hits() {
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
    let grpc = |s: &TestServer| format!("--remote_cache=grpc://{}", s.addr);
    let header = format!("--remote_header=Authorization=Bearer {token}");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("plain", vec![grpc(&open)], vec![grpc(&open)]),
        (
            "instance",
            vec![grpc(&open), "--remote_instance_name=team/a".into()],
            vec![grpc(&open), "--remote_instance_name=team/a".into()],
        ),
        (
            "token",
            vec![grpc(&guarded), header.clone()],
            vec![grpc(&guarded), header.clone()],
        ),
        // Uploaded through Bazel's HTTP cache, found over gRPC.
        (
            "mixed",
            args(&[&format!("--remote_cache={}", open.url("/bazel"))]),
            vec![grpc(&open)],
        ),
    ];
    for (name, first_args, second_args) in cases {
        let ws = tmp.path().join(name);
        workspace(&ws, &format!("hello-{name}"));
        let first = build(&ws, &tmp.path().join(format!("{name}-1")), first_args).await;
        assert!(!first.contains("remote cache hit"), "{name}: {first}");
        // A fresh output root has nothing locally: the result must come from the server.
        let root2 = tmp.path().join(format!("{name}-2"));
        let second = build(&ws, &root2, second_args).await;
        assert!(second.contains("1 remote cache hit"), "{name}: {second}");
        assert_eq!(output(&ws, &root2), format!("hello-{name}\n"), "{name}");
    }
    // Another instance has its own action cache.
    let ws = tmp.path().join("plain");
    let other = build(
        &ws,
        &tmp.path().join("plain-other"),
        vec![grpc(&open), "--remote_instance_name=team/b".into()],
    )
    .await;
    assert!(!other.contains("remote cache hit"), "{other}");
    // Without the token the capabilities say no writes, so Bazel stops unless told not to
    // upload; then it builds, and stores nothing.
    let ws = tmp.path().join("no-token");
    workspace(&ws, "hello-no-token");
    let (ok, report) = try_build(&ws, &tmp.path().join("nt-0"), vec![grpc(&guarded)]).await;
    assert!(
        !ok && report.contains("not authorized to write"),
        "{report}"
    );
    let read_only = || vec![grpc(&guarded), "--noremote_upload_local_results".into()];
    let _ = build(&ws, &tmp.path().join("nt-1"), read_only()).await;
    let second = build(&ws, &tmp.path().join("nt-2"), read_only()).await;
    assert!(!second.contains("remote cache hit"), "{second}");
}

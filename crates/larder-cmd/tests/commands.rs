//! Commands that fail, hang and talk: what the store reports, and that nothing is left running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_cmd::CmdStore;
use larder_core::{ErrorKind, Key, StoreExt};

/// A script that behaves as `$MODE` (a file next to it) says: `ok` copies, `fail` prints to
/// stderr and exits 3, `hang` starts a `sleep` that writes its pid and waits.
fn script(dir: &Path) -> PathBuf {
    let path = dir.join("remote tool.sh");
    let body = r#"#!/bin/sh
mode=$(cat "$(dirname "$0")/mode")
case "$mode" in
  ok) cp "$1" "$2" ;;
  fail)
    i=0
    while [ $i -lt 200 ]; do echo "noise line $i" >&2; i=$((i+1)); done
    echo "bucket says: permission denied for $2" >&2
    exit 3 ;;
  hang)
    sleep 600 &
    echo $! > "$(dirname "$0")/sleep.pid"
    wait ;;
esac
"#;
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn set_mode(dir: &Path, mode: &str) {
    std::fs::write(dir.join("mode"), mode).expect("mode");
}

fn store(dir: &Path, tool: &Path, timeout: Duration) -> CmdStore {
    let remote = dir.join("remote");
    std::fs::create_dir_all(remote.join("blobs")).expect("mkdir");
    std::fs::create_dir_all(remote.join("entries")).expect("mkdir");
    let t = format!("'{}' %{{SRC}} %{{TGT}}", tool.display());
    CmdStore::builder(remote.to_string_lossy())
        .with_put(&t)
        .expect("put")
        .with_get(&t)
        .expect("get")
        .with_miss_status(vec![1])
        .with_timeout(timeout)
        .build()
        .expect("store")
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The `sleep` the script started in `hang` mode went with its process group (the kernel is
/// allowed a moment to reap it); `after` names what should have killed it.
fn assert_sleep_died(dir: &Path, after: &str) {
    let pid: i32 = std::fs::read_to_string(dir.join("sleep.pid"))
        .expect("the script started sleep")
        .trim()
        .parse()
        .expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "sleep {pid} survived {after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_upload_reports_command_status_and_stderr_tail() {
    let dir = tempfile::tempdir().expect("dir");
    let tool = script(dir.path());
    set_mode(dir.path(), "fail");
    let s = store(dir.path(), &tool, Duration::from_secs(30));
    let err = s
        .put_blob_bytes(Bytes::from_static(b"some output"))
        .await
        .expect_err("the upload command fails");
    let msg = err.to_string();
    assert!(msg.contains("remote tool.sh"), "names the command: {msg}");
    assert!(msg.contains("exit status 3"), "gives the status: {msg}");
    assert!(
        msg.contains("bucket says: permission denied"),
        "has the stderr tail: {msg}"
    );
    assert!(!msg.contains("noise line 0\n"), "only the tail: {msg}");
    assert!(msg.len() < 4096, "bounded: {} bytes", msg.len());
    assert_eq!(err.kind(), ErrorKind::Permanent);

    // A download failing with an exit status that is not a miss is an error too.
    let key = Key::new("k").expect("key");
    let err = s.get_entry(&key).await.expect_err("status 3 is not a miss");
    assert!(err.to_string().contains("exit status 3"), "{err}");

    // Back to a working tool: a real miss (cp exits 1) is a miss, and round trips work.
    set_mode(dir.path(), "ok");
    assert!(s.get_entry(&key).await.expect("miss").is_none());
    let d = s
        .put_blob_bytes(Bytes::from_static(b"now it works"))
        .await
        .expect("put");
    assert_eq!(
        s.get_blob_bytes(&d, 100).await.expect("get"),
        Some(b"now it works".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_command_times_out_and_its_process_group_is_killed() {
    let dir = tempfile::tempdir().expect("dir");
    let tool = script(dir.path());
    set_mode(dir.path(), "hang");
    let s = store(dir.path(), &tool, Duration::from_millis(1500));
    let started = Instant::now();
    let err = s
        .put_blob_bytes(Bytes::from_static(b"stuck"))
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    assert!(err.to_string().contains("did not finish within"), "{err}");
    assert_sleep_died(dir.path(), "the time-out");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_operation_kills_its_command() {
    let dir = tempfile::tempdir().expect("dir");
    let tool = script(dir.path());
    set_mode(dir.path(), "hang");
    let s = store(dir.path(), &tool, Duration::from_secs(600));
    let put = s.put_blob_bytes(Bytes::from_static(b"cancel me"));
    let cancelled = tokio::time::timeout(Duration::from_millis(1500), put).await;
    assert!(cancelled.is_err(), "still running when cancelled");
    assert_sleep_died(dir.path(), "the cancellation");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_concurrently_up_to_the_bound() {
    let dir = tempfile::tempdir().expect("dir");
    let remote = dir.path().join("remote");
    std::fs::create_dir_all(remote.join("blobs")).expect("mkdir");
    // Each upload takes 0.5 s; 8 of them with 4 jobs take about 1 s, not 4 s or 0.5 s.
    let s = CmdStore::builder(remote.to_string_lossy())
        .with_put("sh -c 'sleep 0.5; cp \"$0\" \"$1\"' %{SRC} %{TGT}")
        .expect("put")
        .with_get("cp %{SRC} %{TGT}")
        .expect("get")
        .with_jobs(4)
        .build()
        .expect("store");
    let started = Instant::now();
    let puts = (0..8).map(|i| {
        let s = s.clone();
        async move { s.put_blob_bytes(Bytes::from(format!("blob {i}"))).await }
    });
    for r in futures::future::join_all(puts).await {
        r.expect("put");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "bound not applied: {took:?}"
    );
    assert!(
        took < Duration::from_millis(3500),
        "not concurrent: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_program_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let s = CmdStore::builder(dir.path().to_string_lossy())
        .with_put("larder-no-such-uploader %{SRC} %{TGT}")
        .expect("put")
        .with_get("cp %{SRC} %{TGT}")
        .expect("get")
        .build()
        .expect("store");
    let err = s
        .put_blob_bytes(Bytes::from_static(b"x"))
        .await
        .expect_err("no such program");
    assert!(
        err.to_string()
            .contains("cannot run `larder-no-such-uploader"),
        "{err}"
    );
}

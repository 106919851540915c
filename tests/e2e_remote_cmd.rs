//! `larder exec --store cmd://...` end to end: two checkouts sharing a "remote" directory
//! reached only through `cp` commands, and a failing upload command that must not fail the
//! build.

mod common;

use std::path::Path;

use common::{Sandbox, assert_exit, count_lines, text};

fn checkout(sb: &Sandbox, dir: &Path, runs: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("checkout dir");
    sb.write(dir, "in.txt", "the same input\n");
    let script = format!(
        "echo run >> {}; tr a-z A-Z < in.txt > out.txt; head -c 300000 /dev/urandom > blob.bin",
        runs.display()
    );
    [
        "exec", "--in", "in.txt", "--out", "out.txt", "--out", "blob.bin", "--", "sh", "-c",
        &script,
    ]
    .map(String::from)
    .to_vec()
}

fn remote(sb: &Sandbox) -> std::path::PathBuf {
    let r = sb.root.join("remote");
    for sub in ["entries", "blobs"] {
        std::fs::create_dir_all(r.join(sub)).expect("remote dirs");
    }
    r
}

/// A store in `remote` whose uploads run `tool` and whose downloads are `cp`.
fn uploader_url(remote: &Path, tool: &Path) -> String {
    format!(
        "cmd://{}?put={} %{{SRC}} %{{TGT}}&get=cp %{{SRC}} %{{TGT}}",
        remote.display(),
        tool.display()
    )
}

/// `larder --store URL ARGS...` in `dir`.
fn larder_with_store(
    sb: &Sandbox,
    dir: &Path,
    url: &str,
    args: &[String],
) -> std::process::Command {
    let mut cmd = sb.larder_in(dir);
    cmd.args(["--store", url]).args(args);
    cmd
}

#[test]
fn two_checkouts_share_hits_through_cp_commands() {
    let sb = Sandbox::new();
    let r = remote(&sb);
    let url = format!(
        "cmd://{}?put=cp+%25{{SRC}}+%25{{TGT}}&get=cp %{{SRC}} %{{TGT}}&miss_status=1",
        r.display()
    );
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);
    let run = |dir: &Path| {
        larder_with_store(&sb, dir, &url, &args)
            .output()
            .expect("running larder exec")
    };
    assert_exit(&run(&a), 0);
    assert_eq!(count_lines(&runs), 1);
    let hit = run(&b);
    assert_exit(&hit, 0);
    assert_eq!(count_lines(&runs), 1, "hit: {}", text(&hit.stderr));
    assert_eq!(
        std::fs::read(b.join("blob.bin")).expect("restored"),
        std::fs::read(a.join("blob.bin")).expect("original")
    );
}

#[test]
fn a_failing_upload_command_is_a_warning_that_names_it() {
    let sb = Sandbox::new();
    let r = remote(&sb);
    let tool = sb.script(
        "uploader.sh",
        "echo \"quota exceeded uploading to $2\" >&2\nexit 7\n",
    );
    let url = uploader_url(&r, &tool);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let out = larder_with_store(&sb, &a, &url, &args)
        .output()
        .expect("running larder exec");
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    let err = text(&out.stderr);
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("uploader.sh"), "names the command: {err}");
    assert!(err.contains("exit status 7"), "gives the status: {err}");
    assert!(err.contains("quota exceeded"), "has stderr: {err}");
}

#[test]
fn sigterm_during_an_upload_kills_the_command_and_its_children() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    let sb = Sandbox::new();
    let r = remote(&sb);
    let pids = sb.root.join("pids");
    std::fs::create_dir_all(&pids).expect("pid dir");
    let tool = sb.script(
        "stuck-uploader.sh",
        &format!(
            "echo $$ > {p}/tool.pid\nsleep 600 &\necho $! > {p}/sleep.pid\nwait\n",
            p = pids.display()
        ),
    );
    let url = uploader_url(&r, &tool);
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let mut larder = larder_with_store(&sb, &a, &url, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting larder exec");
    let deadline = Instant::now() + Duration::from_secs(30);
    let read_pid = |name: &str| -> Option<i32> {
        std::fs::read_to_string(pids.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    while read_pid("sleep.pid").is_none() {
        assert!(
            Instant::now() < deadline,
            "the upload command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tool_pid, sleep_pid) = (
        read_pid("tool.pid").expect("tool pid"),
        read_pid("sleep.pid").expect("sleep pid"),
    );
    let larder_pid = i32::try_from(larder.id()).expect("pid fits i32");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(larder_pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = larder.try_wait().expect("waiting for larder") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = larder.kill();
            panic!("larder ignored SIGTERM during an upload");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    // SAFETY: signal 0 only checks that the process exists.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) == 0 };
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(tool_pid) || alive(sleep_pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(tool_pid), "the upload command survived larder");
    assert!(
        !alive(sleep_pid),
        "the upload command's child survived larder"
    );
}

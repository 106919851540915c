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
        sb.larder_in(dir)
            .args(["--store", &url])
            .args(&args)
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
    let url = format!(
        "cmd://{}?put={} %{{SRC}} %{{TGT}}&get=cp %{{SRC}} %{{TGT}}",
        r.display(),
        tool.display()
    );
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let out = sb
        .larder_in(&a)
        .args(["--store", &url])
        .args(&args)
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

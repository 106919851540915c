//! `larder exec --upload-workers N [--no-wait]`: the run is reported as soon as the command has
//! finished and its outputs are read; the upload (blobs N at a time, the entry last) still
//! completes before larder exits, unless `--no-wait` abandons it; a failed upload is a warning,
//! never a failed build.

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, assert_exit, count_lines, text};

/// A generator that counts its runs and writes three outputs large enough to be blobs, one
/// small one, and 10 KiB of stdout (a captured blob too).
fn generator(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let counter = sb.root.join("runs");
    let script = sb.script(
        "bin/gen",
        &format!(
            "echo run >> '{}'\nmkdir -p out\n\
             head -c 200000 /dev/urandom > out/a.bin\n\
             head -c 300000 /dev/urandom > out/b.bin\n\
             head -c 100000 /dev/urandom > out/c.bin\n\
             echo small > out/d.txt\n\
             head -c 10240 /dev/zero | tr '\\0' x\n",
            counter.display()
        ),
    );
    (script, counter)
}

fn exec(sb: &Sandbox, script: &Path, flags: &[&str]) -> std::process::Output {
    let mut args = vec!["-v", "exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--in", "in.txt", "--out", "out", "--"]);
    args.push(script.to_str().expect("UTF-8 path"));
    sb.run(args)
}

fn read_outputs(sb: &Sandbox) -> Vec<Vec<u8>> {
    ["a.bin", "b.bin", "c.bin", "d.txt"]
        .iter()
        .map(|n| std::fs::read(sb.work.join("out").join(n)).expect("reading an output"))
        .collect()
}

#[test]
fn background_upload_completes_before_exit() {
    let sb = Sandbox::new();
    sb.write(&sb.work, "in.txt", "input\n");
    let (script, counter) = generator(&sb);

    let first = exec(&sb, &script, &["--upload-workers", "3"]);
    assert_exit(&first, 0);
    let err = text(&first.stderr);
    assert!(err.contains("in the background"), "{err}");
    assert!(
        !err.contains("failed") && !err.contains("abandoned"),
        "{err}"
    );
    assert_eq!(
        first.stdout.len(),
        10240,
        "the command's stdout passes through"
    );
    let made = read_outputs(&sb);

    // The upload landed before the first larder exited: the next run is a hit.
    std::fs::remove_dir_all(sb.work.join("out")).expect("removing the outputs");
    let second = exec(&sb, &script, &[]);
    assert_exit(&second, 0);
    assert_eq!(count_lines(&counter), 1, "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("larder: hit "),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(read_outputs(&sb), made);
    assert_eq!(second.stdout, first.stdout, "stdout is replayed");
}

#[test]
fn no_wait_abandons_and_says_so() {
    let sb = Sandbox::new();
    sb.write(&sb.work, "in.txt", "input\n");
    let (script, counter) = generator(&sb);

    let first = exec(&sb, &script, &["--upload-workers", "2", "--no-wait"]);
    assert_exit(&first, 0);
    let err = text(&first.stderr);
    let made = read_outputs(&sb);
    assert_eq!(made[3], b"small\n", "the build's outputs are in place");
    // The upload is abandoned unless it finished in the instant before exit.
    let abandoned = err.contains("abandoned 1 background upload");
    std::fs::remove_dir_all(sb.work.join("out")).expect("removing the outputs");
    let second = exec(&sb, &script, &[]);
    assert_exit(&second, 0);
    let expected_runs = if abandoned { 2 } else { 1 };
    assert_eq!(
        count_lines(&counter),
        expected_runs,
        "abandoned: {abandoned}\n{err}\n{}",
        text(&second.stderr)
    );
}

#[test]
fn failed_upload_is_a_warning() {
    let sb = Sandbox::new();
    sb.write(&sb.work, "in.txt", "input\n");
    let (script, counter) = generator(&sb);
    // Create the store, then put a file where each blob fan-out directory would go: every blob
    // upload fails (as root, permissions would not stop it).
    assert_exit(&sb.run(["stats"]), 0);
    let blobs = sb.cache.join("blobs");
    for i in 0..256 {
        std::fs::write(blobs.join(format!("{i:02x}")), "in the way").expect("blocking a dir");
    }

    let first = exec(&sb, &script, &["--upload-workers", "2"]);
    assert_exit(&first, 0);
    let err = text(&first.stderr);
    assert!(err.contains("background upload failed"), "{err}");
    assert_eq!(read_outputs(&sb)[3], b"small\n");

    // Nothing was stored: the next run (store repaired) runs the command again.
    for i in 0..256 {
        std::fs::remove_file(blobs.join(format!("{i:02x}"))).expect("unblocking");
    }
    let second = exec(&sb, &script, &[]);
    assert_exit(&second, 0);
    assert_eq!(count_lines(&counter), 2, "{}", text(&second.stderr));
}

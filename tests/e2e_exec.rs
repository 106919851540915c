//! `larder exec` around a real C compile: a miss runs the compiler, a hit restores a working
//! binary without running it (proved by a wrapper that counts its runs), replays the captured
//! output, and a checkout in another directory shares the entry.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Sandbox, assert_exit, command_stderr, count_lines, text};

const MAIN_C: &str = r#"#include <stdio.h>
int main(void) {
    printf("hello from a cached build: %d\n", 6 * 7);
    return 7;
}
"#;

/// Run the built program; its stdout and exit code.
fn run_app(dir: &Path) -> (String, i32) {
    let out = Command::new(dir.join("app"))
        .current_dir(dir)
        .output()
        .expect("running the restored program");
    (text(&out.stdout), out.status.code().unwrap_or(-1))
}

#[test]
fn cc_runs_once_then_hits_restore_a_working_binary() {
    let sb = Sandbox::new();
    let counter = sb.root.join("compiler-runs");
    // Counts its runs, prints to both streams (for the replay check), then becomes cc.
    let wrapper = sb.script(
        "bin/ccwrap",
        &format!(
            "echo run >> '{}'\necho 'ccwrap: compiling'\necho 'ccwrap: note on stderr' >&2\nexec \"$@\"\n",
            counter.display()
        ),
    );
    let wrapper = wrapper.to_str().expect("UTF-8 path");
    sb.write(&sb.work, "main.c", MAIN_C);
    let exec = |dir: &Path| {
        sb.run_in(
            dir,
            [
                "-v", "exec", "--in", "main.c", "--out", "app", "--", wrapper, "cc", "-o", "app",
                "main.c",
            ],
        )
    };

    // Miss: the compiler runs, its output passes through.
    let first = exec(&sb.work);
    assert_exit(&first, 0);
    assert_eq!(count_lines(&counter), 1);
    assert!(
        text(&first.stderr).contains("larder: miss "),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(text(&first.stdout), "ccwrap: compiling\n");
    assert_eq!(command_stderr(&first), "ccwrap: note on stderr\n");
    assert_eq!(
        run_app(&sb.work),
        ("hello from a cached build: 42\n".into(), 7)
    );

    // Hit: no compiler, the binary comes back executable, output and exit code are replayed.
    std::fs::remove_file(sb.work.join("app")).expect("removing app");
    let second = exec(&sb.work);
    assert_exit(&second, 0);
    assert_eq!(count_lines(&counter), 1, "the compiler ran on a hit");
    assert!(
        text(&second.stderr).contains("larder: hit "),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(command_stderr(&second), command_stderr(&first));
    let mode = std::fs::metadata(sb.work.join("app"))
        .expect("app restored")
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "executable bit lost: {mode:o}");
    assert_eq!(
        run_app(&sb.work),
        ("hello from a cached build: 42\n".into(), 7)
    );

    // Changing the source is a miss.
    sb.write(&sb.work, "main.c", MAIN_C.replace("6 * 7", "6 * 9"));
    let third = exec(&sb.work);
    assert_exit(&third, 0);
    assert_eq!(count_lines(&counter), 2, "a changed input must miss");
    assert_eq!(
        run_app(&sb.work),
        ("hello from a cached build: 54\n".into(), 7)
    );

    // Another checkout of the same sources, elsewhere: a hit (paths are normalized).
    let other = sb.root.join("elsewhere/checkout");
    sb.write(&other, "main.c", MAIN_C);
    let fourth = exec(&other);
    assert_exit(&fourth, 0);
    assert_eq!(count_lines(&counter), 2, "a second checkout should hit");
    assert_eq!(
        run_app(&other),
        ("hello from a cached build: 42\n".into(), 7)
    );
}

#[test]
fn exit_codes_pass_through_and_failures_are_not_cached() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    let script = format!("echo run >> '{}'; exit 3", counter.display());
    for _ in 0..2 {
        let out = sb.run(["exec", "--", "sh", "-c", &script]);
        assert_exit(&out, 3);
    }
    assert_eq!(
        count_lines(&counter),
        2,
        "a failing command must run every time"
    );

    // Killed by a signal: 128 + signal number, like a shell.
    let out = sb.run(["exec", "--", "sh", "-c", "kill -TERM $$"]);
    assert_exit(&out, 128 + 15);

    // A command that does not exist: 127, like a shell.
    let out = sb.run(["exec", "--", "no-such-command-larder-test"]);
    assert_exit(&out, 127);
    assert!(text(&out.stderr).contains("no-such-command-larder-test"));
}

#[test]
fn env_and_salt_are_part_of_the_signature() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    let script = format!(
        "echo run >> '{}'; echo \"$FLAVOUR\" > out.txt",
        counter.display()
    );
    let exec = |flavour: Option<&str>, salt: &str| {
        let mut cmd = sb.larder();
        cmd.args([
            "exec", "--env", "FLAVOUR", "--salt", salt, "--out", "out.txt", "--", "sh", "-c",
            &script,
        ]);
        if let Some(f) = flavour {
            cmd.env("FLAVOUR", f);
        }
        let out = cmd.output().expect("running larder");
        assert_exit(&out, 0);
        std::fs::read_to_string(sb.work.join("out.txt")).expect("out.txt")
    };
    assert_eq!(exec(Some("plain"), ""), "plain\n");
    assert_eq!(exec(Some("plain"), ""), "plain\n");
    assert_eq!(count_lines(&counter), 1);
    assert_eq!(exec(Some("spicy"), ""), "spicy\n");
    assert_eq!(count_lines(&counter), 2);
    assert_eq!(exec(None, ""), "\n");
    assert_eq!(count_lines(&counter), 3);
    assert_eq!(exec(Some("plain"), "v2"), "plain\n");
    assert_eq!(count_lines(&counter), 4);
}

#[test]
fn oversized_or_held_open_output_is_passed_through_but_not_cached() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    // 65 MiB of stdout: over the 64 MiB capture limit.
    let script = format!(
        "echo run >> '{}'; head -c 68157440 /dev/zero",
        counter.display()
    );
    for _ in 0..2 {
        let out = sb.run(["-v", "exec", "--", "sh", "-c", &script]);
        assert_exit(&out, 0);
        assert_eq!(
            out.stdout.len(),
            68_157_440,
            "stdout not passed through whole"
        );
        assert!(
            text(&out.stderr).contains("not stored"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(count_lines(&counter), 2);

    // A background process keeps stdout open after the command exits: larder does not wait
    // for it, and does not cache a capture it cannot finish.
    let started = std::time::Instant::now();
    let out = sb.run(["-v", "exec", "--", "sh", "-c", "sleep 4 & echo quick"]);
    assert_exit(&out, 0);
    assert!(started.elapsed() < std::time::Duration::from_millis(3800));
    assert_eq!(text(&out.stdout), "quick\n");
    assert!(
        text(&out.stderr).contains("held open"),
        "{}",
        text(&out.stderr)
    );
}

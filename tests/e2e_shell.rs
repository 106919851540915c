//! The CLI in a shell user's hands: `--version` names what is compiled in, `completions` and
//! `man` survive a reader that goes away, and logs to a pipe carry no terminal colour codes.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::served::Served;
use common::{Sandbox, assert_exit, text};

const ESC: u8 = 0x1b;

#[test]
fn version_names_the_stores_compiled_in() {
    let sb = Sandbox::new();
    let out = sb.run(["--version"]);
    assert_exit(&out, 0);
    let version = text(&out.stdout);
    assert!(version.starts_with("larder "), "{version}");
    assert!(version.contains("stores: fs http"), "{version}");
    assert!(version.contains("features: server"), "{version}");
}

#[test]
fn completions_and_man_print_and_survive_a_closed_pipe() {
    let sb = Sandbox::new();
    let out = sb.run(["completions", "bash"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("--store"));
    let out = sb.run(["man"]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains(".TH larder 1"));
    // The reading end closed before larder writes: `larder man | true`.
    for args in [&["man"][..], &["completions", "zsh"][..]] {
        let mut child = sb
            .larder()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting larder");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("waiting for larder");
        assert_exit(&out, 0);
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let sb = Sandbox::new();
    // `larder serve`, stderr a pipe: info lines, no colour.
    let mut served = Served::start(&sb, &sb.root.join("server-cache"), &[]);
    let mut stderr = served.child.stderr.take().expect("piped stderr");
    assert_eq!(served.terminate(), Some(0));
    let mut log = Vec::new();
    stderr
        .read_to_end(&mut log)
        .expect("reading the server's stderr");
    assert!(text(&log).contains("INFO"), "{}", text(&log));
    assert!(!log.contains(&ESC), "colour codes in {:?}", text(&log));

    // A one-shot command logging everything, warnings included (nothing listens on the port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    sb.write(&sb.work, "in.txt", "input\n");
    let out = sb
        .larder()
        .env("LARDER_LOG", "trace")
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", &format!("http://127.0.0.1:{port}")])
        .args(["exec", "--in", "in.txt", "--out", "out.txt", "--"])
        .args(["cp", "in.txt", "out.txt"])
        .output()
        .expect("running larder exec");
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("larder: warning: "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !out.stderr.contains(&ESC),
        "colour codes in {:?}",
        text(&out.stderr)
    );
}

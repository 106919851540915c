//! Bad input gets a clear message and exit status 2; a broken cache only warns, and the
//! command still runs.

mod common;

use common::{Sandbox, assert_exit, text};

#[test]
fn bad_keys_are_rejected() {
    let sb = Sandbox::new();
    sb.write(&sb.work, "f.txt", "x");
    let long = "k".repeat(513);
    for key in ["../x", "/abs", "a/../b", "a b", "a//b", "", long.as_str()] {
        for cmd in ["put", "get"] {
            let out = sb.run([cmd, key, "f.txt"]);
            assert_exit(&out, 2);
            let err = text(&out.stderr);
            assert!(
                err.starts_with("larder: error: invalid key"),
                "{cmd} {key:?}: {err}"
            );
            assert_eq!(
                err.lines().count(),
                1,
                "error printed more than once: {err}"
            );
        }
    }
}

#[test]
fn outputs_outside_the_working_directory_are_rejected() {
    let sb = Sandbox::new();
    let marker = sb.root.join("ran");
    let script = format!("touch '{}'", marker.display());
    for out in ["../escape", "/etc/passwd", "a/../../x", "."] {
        let o = sb.run(["exec", "--out", out, "--", "sh", "-c", &script]);
        assert_exit(&o, 2);
        assert!(
            text(&o.stderr).contains("--out"),
            "{out}: {}",
            text(&o.stderr)
        );
    }
    assert!(!marker.exists(), "the command ran despite a bad --out");
    let o = sb.run(["put", "k", "../escape"]);
    assert_exit(&o, 2);
    assert!(
        text(&o.stderr).contains("outside the working directory"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn missing_inputs_are_errors() {
    let sb = Sandbox::new();
    let o = sb.run(["exec", "--in", "missing.c", "--", "true"]);
    assert_exit(&o, 2);
    assert!(
        text(&o.stderr).contains("input missing.c does not exist"),
        "{}",
        text(&o.stderr)
    );
    let o = sb.run(["exec", "--in", "src/*.c", "--", "true"]);
    assert_exit(&o, 2);
    assert!(
        text(&o.stderr).contains("matched no files"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn an_unusable_cache_warns_and_the_command_still_runs() {
    let sb = Sandbox::new();
    // The cache path is a file, not a directory.
    let not_a_dir = sb.write(&sb.root, "cache-is-a-file", "oops");
    let marker = sb.work.join("out.txt");
    for _ in 0..2 {
        let _ = std::fs::remove_file(&marker);
        let o = sb
            .larder()
            .env("LARDER_STORE", &not_a_dir)
            .args([
                "exec",
                "--out",
                "out.txt",
                "--",
                "sh",
                "-c",
                "echo built > out.txt; echo stdout",
            ])
            .output()
            .expect("running larder");
        assert_exit(&o, 0);
        assert!(
            text(&o.stderr).contains("larder: warning: cache unavailable"),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(text(&o.stdout), "stdout\n");
        assert_eq!(std::fs::read_to_string(&marker).expect("output"), "built\n");
    }

    // A store compiled out of this build: a warning for exec, an error naming the feature
    // for commands that need the store. (`cargo xtask test` builds every store in; the unit test
    // `compiled_out_stores_name_their_feature` covers the message there.)
    if cfg!(feature = "s3") {
        eprintln!("skipping the compiled-out store check: this build has the `s3` feature");
    } else {
        let o = sb.run(["--store", "s3://bucket/prefix", "exec", "--", "true"]);
        assert_exit(&o, 0);
        assert!(
            text(&o.stderr).contains("`s3` feature"),
            "{}",
            text(&o.stderr)
        );
        let o = sb.run(["--store", "s3://bucket/prefix", "stats"]);
        assert_exit(&o, 2);
        assert!(
            text(&o.stderr).contains(
                "store URL scheme `s3` needs larder built with the `s3` feature (cargo install larder-cli --features s3)"
            ),
            "{}",
            text(&o.stderr)
        );
    }
    let o = sb.run(["get", "k", "f"]);
    assert_exit(&o, 1);
}

#[test]
fn get_of_a_missing_key_is_a_miss() {
    let sb = Sandbox::new();
    assert_exit(&sb.run(["get", "no/such/key"]), 1);
    sb.write(&sb.work, "a.txt", "a");
    assert_exit(&sb.run(["put", "k", "a.txt"]), 0);
    // The entry exists but does not hold b.txt.
    assert_exit(&sb.run(["get", "k", "b.txt"]), 1);
    std::fs::remove_file(sb.work.join("a.txt")).expect("removing a.txt");
    assert_exit(&sb.run(["get", "k", "a.txt"]), 0);
    assert_eq!(
        std::fs::read(sb.work.join("a.txt")).expect("restored"),
        b"a"
    );
}

#[test]
fn unknown_config_keys_are_named() {
    let sb = Sandbox::new();
    let file = sb.write(
        &sb.work,
        "larder.toml",
        "max_size = \"1G\"\nmax_sise = \"2G\"\n",
    );
    let o = sb.run(["config"]);
    assert_exit(&o, 2);
    let err = text(&o.stderr);
    assert!(err.contains("unknown key `max_sise`"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    // A bad value names where it came from.
    std::fs::remove_file(&file).expect("removing larder.toml");
    let o = sb
        .larder()
        .env("LARDER_MAX_SIZE", "lots")
        .arg("config")
        .output()
        .expect("larder");
    assert_exit(&o, 2);
    assert!(
        text(&o.stderr).contains("LARDER_MAX_SIZE"),
        "{}",
        text(&o.stderr)
    );
}

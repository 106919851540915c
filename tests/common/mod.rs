//! Helpers shared by the end-to-end tests: a sandbox (temporary HOME, XDG directories and cache
//! directory, so nothing touches the real home) and ways to run the real `larder` binary in it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod served;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `larder` binary cargo built for these tests.
pub const LARDER: &str = env!("CARGO_BIN_EXE_larder");

/// An isolated environment for one test.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    /// The sandbox's root directory.
    pub root: PathBuf,
    /// `$HOME`.
    pub home: PathBuf,
    /// The cache directory (`LARDER_STORE`).
    pub cache: PathBuf,
    /// A work directory (a checkout).
    pub work: PathBuf,
}

impl Sandbox {
    /// A fresh sandbox with an empty work directory.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("larder-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        // The canonical path: the working directory larder sees is canonical too.
        let root = dir.path().canonicalize().expect("canonical temp dir");
        let home = root.join("home");
        let work = root.join("work");
        for d in [&home, &work] {
            std::fs::create_dir_all(d).expect("creating sandbox directories");
        }
        Sandbox {
            _dir: dir,
            cache: root.join("cache"),
            root,
            home,
            work,
        }
    }

    /// A `larder` command run in `dir`, with a clean environment pointing at the sandbox.
    pub fn larder_in(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(LARDER);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("PWD", dir)
            .env("LARDER_STORE", &self.cache)
            .stdin(Stdio::null());
        cmd
    }

    /// A `larder` command run in the work directory.
    pub fn larder(&self) -> Command {
        self.larder_in(&self.work)
    }

    /// Run larder with `args` in `dir` and wait for it.
    pub fn run_in<I, S>(&self, dir: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.larder_in(dir)
            .args(args)
            .output()
            .expect("running larder")
    }

    /// Run larder with `args` in the work directory.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_in(&self.work, args)
    }

    /// `larder stats --json`, parsed.
    pub fn stats(&self) -> serde_json::Value {
        let out = self.run(["stats", "--json"]);
        assert_eq!(code(&out), 0, "larder stats failed: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("stats --json prints JSON")
    }

    /// Write `contents` to `rel` below `dir`, creating parents.
    pub fn write(&self, dir: &Path, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("creating parent directories");
        }
        std::fs::write(&p, contents).expect("writing a test file");
        p
    }

    /// An executable shell script at `rel` below the sandbox root.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(&self.root, rel, format!("#!/bin/sh\n{body}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .expect("making a script executable");
        p
    }
}

/// The exit code of a finished process (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stderr without larder's own lines (`larder: ...`): what the wrapped command printed.
pub fn command_stderr(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("larder: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Number of lines in a file (0 if it does not exist): how many times a wrapper ran.
pub fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Assert a process exited with `expected`, showing its output otherwise.
#[track_caller]
pub fn assert_exit(out: &Output, expected: i32) {
    assert_eq!(
        code(out),
        expected,
        "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

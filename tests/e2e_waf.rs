//! `integrations/waf/larder_cache.py` in a real waf build: `tests/waf_check.py` builds a tiny C
//! project twice (miss, then hit), from a second checkout path, with background uploads, with
//! `WAFCACHE_NO_PUSH`, and without larder at all.
//!
//! It needs python3, a C compiler and waf (the `waf-build` package on PyPI, or `WAF=/path/to/waf`).
//! Without them the test is skipped with a reason, except under CI (`CI` set), where it fails:
//! `cargo xtask test` installs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{LARDER, code, text};

/// The waf script: `$WAF`, else `waf` on `PATH`.
fn find_waf() -> Option<PathBuf> {
    if let Some(w) = std::env::var_os("WAF") {
        return Some(PathBuf::from(w));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("waf"))
        .find(|p| p.is_file())
}

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn waf_builds_hit_through_larder_cache() {
    let waf = find_waf();
    let missing: Vec<&str> = [
        ("python3", works("python3", &["-c", "pass"])),
        ("cc", works("cc", &["--version"])),
        ("waf", waf.is_some()),
    ]
    .into_iter()
    .filter(|(_, here)| !here)
    .map(|(what, _)| what)
    .collect();
    if !missing.is_empty() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} required under CI (run `cargo xtask test`, which installs them)",
                missing.join(", ")
            );
        }
        eprintln!("skipping: {} not available", missing.join(", "));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(root.join("tests/waf_check.py"))
        .arg(LARDER)
        .arg(waf.unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .expect("running python3");
    assert_eq!(
        code(&out),
        0,
        "waf_check.py failed\n--- stdout\n{}\n--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

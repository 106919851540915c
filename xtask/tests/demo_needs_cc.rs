//! `cargo xtask demo` without a working C compiler: it stops before building anything, with one
//! line that says what to install.

use std::process::Command;

/// Run `xtask demo` with `PATH` set to `path`; its exit code and stderr.
fn demo_with_path(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("demo")
        .env("PATH", path)
        .output()
        .expect("running xtask");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_cc_on_path_is_a_one_line_message() {
    let (code, stderr) = demo_with_path(std::path::Path::new("/nonexistent-xtask-demo-path"));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "xtask: error: larder's demo compiles C: install a C compiler (Debian: apt install gcc libc6-dev)\n"
    );
}

#[test]
fn a_cc_without_c_headers_is_a_one_line_message() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("xtask-demo-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A compiler that cannot find <stdio.h>, as gcc does without libc6-dev.
    let cc = dir.join("cc");
    std::fs::write(
        &cc,
        "#!/bin/sh\necho 'fatal error: stdio.h: No such file or directory' >&2\nexit 1\n",
    )
    .expect("fake cc");
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, stderr) = demo_with_path(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("install a C compiler (Debian: apt install gcc libc6-dev)")
            && stderr.contains("cannot find <stdio.h>"),
        "{stderr}"
    );
}

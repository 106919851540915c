//! `cargo xtask bench --reapi [--quick]`: `larder serve`'s Remote Execution API against its own
//! HTTP cache and against BuildGrid (benches/reapi.py, issue 14's "Measure").
//!
//! Builds a release `larder` and `reapi-client` (the one client both servers are measured
//! with), installs what the benchmark runs (BuildGrid 0.4.4 into a virtualenv under the target
//! dir, Debian's bazel-bootstrap for Bazel 4.2) when missing, then runs the script. Its table
//! goes to stdout; its JSON and Markdown to `--out` (default `benches/results`, or
//! `target/bench-quick` with `--quick`, whose figures are a smoke run's).

use anyhow::Result;
use xshell::{Shell, cmd};

use crate::{flags, project_root, target_dir, test};

/// BuildGrid, the peer: 0.4.4 is the last release that installs on Python 3.11, and Bazel 4.2
/// gets remote cache hits from it. Its pinned grpcio and protobuf stay in a virtualenv of
/// their own.
const BUILDGRID_PIP: &str = "buildgrid==0.4.4";
const BUILDGRID_VERSION: &str = "0.4.4";
const BUILDGRID_DIR: &str = "buildgrid";

/// Make the virtualenv [`BUILDGRID_DIR`] and pip-install [`BUILDGRID_PIP`] into it, unless it
/// already holds that version.
fn install_buildgrid(sh: &Shell) -> Result<()> {
    let dir = target_dir().join(BUILDGRID_DIR);
    let python = dir.join("bin/python");
    let code = "import importlib.metadata as m; print(m.version('buildgrid'))";
    let installed = |sh: &Shell| {
        cmd!(sh, "{python} -c {code}")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|v| v.trim() == BUILDGRID_VERSION)
    };
    test::venv_install(sh, &dir, BUILDGRID_PIP, "BuildGrid", installed)
}

/// What benches/reapi.py needs besides the release binaries: BuildGrid and Bazel, installed
/// when missing.
pub(crate) fn prerequisites(sh: &Shell) -> Result<()> {
    install_buildgrid(sh)?;
    if cmd!(sh, "bazel --version")
        .quiet()
        .ignore_stderr()
        .read()
        .is_err()
    {
        test::apt_install(sh, &["bazel-bootstrap"])?;
    }
    Ok(())
}

/// BuildGrid's `bgd` in its virtualenv.
pub(crate) fn bgd() -> std::path::PathBuf {
    target_dir().join(BUILDGRID_DIR).join("bin/bgd")
}

impl flags::Bench {
    /// `--reapi`: release builds, BuildGrid and Bazel when missing, then benches/reapi.py.
    pub(crate) fn run_reapi(self, sh: &Shell) -> Result<()> {
        cmd!(
            sh,
            "cargo build --release -p larder-cli -p larder-benches --bin larder --bin reapi-client"
        )
        .run()?;
        prerequisites(sh)?;
        let release = target_dir().join("release");
        let (larder, client) = (release.join("larder"), release.join("reapi-client"));
        let bgd = bgd();
        let out = self.out.unwrap_or_else(|| {
            if self.quick {
                target_dir().join("bench-quick").display().to_string()
            } else {
                project_root().join("benches/results").display().to_string()
            }
        });
        let script = project_root().join("benches/reapi.py");
        let quick = self.quick.then_some("--quick");
        cmd!(
            sh,
            "python3 {script} --larder {larder} --client {client} --bgd {bgd} --out {out} {quick...}"
        )
        .run()?;
        Ok(())
    }
}

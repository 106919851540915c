//! `larder policy`: check a WebAssembly policy component, generate a synthetic build trace,
//! and replay a trace against policies (`simulate`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru, validate_victims};
use larder_core::normalize::PathNormalizer;
use larder_core::size::{format_size, parse_size};
use larder_policy::sim::{SimPolicy, SimResult, SyntheticTrace, Trace, simulate, svg_chart};
use larder_policy::{AdmissionCandidate, NormalizeContext, WasmEviction};

use super::{Ctx, EXIT_OK};
use crate::policies::host;

const EXAMPLES: &str = "\
Examples:
  cargo xtask policies                      # builds target/policies/*.wasm
  larder policy check target/policies/gdsf.wasm
  larder policy trace --out build.trace --builds 200
  larder policy simulate --trace build.trace --capacity 10% --capacity 2G \\
      --policy lru --policy target/policies/gdsf.wasm --policy 'target/policies/ttl.wasm:ttl-ms=3600000'

Policies are WebAssembly components implementing policies/wit/policy.wit (see policies/README.md).";

/// Check, and compare, WebAssembly policies
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate a policy component, print what it exports, and try it on sample data
    Check {
        /// The component (.wasm)
        file: PathBuf,
        /// The config string passed to its init (`--config` is larder's own config file)
        #[arg(long, value_name = "STRING", default_value = "")]
        policy_config: String,
    },
    /// Write a synthetic build trace (Zipf task popularity, size and cost spread, churn)
    Trace {
        /// Output file (default: stdout)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        synth: Synth,
    },
    /// Replay a trace against policies; print hit ratio, byte hit ratio, recompute time saved
    Simulate {
        /// The trace (`time_ms,key,size,cost_ms[,op]` lines, as recorded with `[policy] trace`,
        /// LARDER_TRACE or `larder serve --trace`); default: a synthetic one
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Cache capacity: a size (2G) or a share of the trace's footprint (10%); repeatable
        #[arg(long, value_name = "SIZE|PCT%")]
        capacity: Vec<String>,
        /// lru, belady, belady-size, or FILE.wasm[:CONFIG]; repeatable (default: lru)
        #[arg(long, value_name = "POLICY")]
        policy: Vec<String>,
        /// A trim frees down to capacity × (1 − slack)
        #[arg(long, default_value_t = 0.02)]
        slack: f64,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
        /// Also draw hit ratio against capacity as an SVG chart into FILE
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        #[command(flatten)]
        synth: Synth,
    },
}

/// The synthetic trace's shape.
#[derive(Debug, clap::Args)]
struct Synth {
    /// Distinct build steps in the synthetic project
    #[arg(long, default_value_t = 5_000)]
    tasks: usize,
    /// Successive builds
    #[arg(long, default_value_t = 200)]
    builds: usize,
    /// Steps each build runs
    #[arg(long, default_value_t = 1_000)]
    per_build: usize,
    /// Zipf exponent of step popularity
    #[arg(long, default_value_t = 0.9)]
    zipf: f64,
    /// Probability that a step's inputs change between builds
    #[arg(long, default_value_t = 0.02)]
    churn: f64,
    /// Random seed
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Synth {
    fn trace(&self) -> Trace {
        SyntheticTrace {
            tasks: self.tasks,
            builds: self.builds,
            tasks_per_build: self.per_build,
            zipf: self.zipf,
            churn: self.churn,
            seed: self.seed,
        }
        .generate()
    }
}

/// Run `larder policy`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    match args.command {
        Command::Check {
            file,
            policy_config,
        } => check(&file, &policy_config, ctx),
        Command::Trace { out, synth } => {
            let trace = synth.trace();
            match out {
                Some(path) => {
                    let f = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    trace
                        .write(std::io::BufWriter::new(f))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let (keys, bytes) = trace.footprint();
                    ctx.ui.status(format_args!(
                        "wrote {} requests over {keys} keys ({}) to {}",
                        trace.requests.len(),
                        format_size(bytes),
                        path.display()
                    ));
                }
                None => trace.write(std::io::stdout().lock())?,
            }
            Ok(EXIT_OK)
        }
        Command::Simulate {
            trace,
            capacity,
            policy,
            slack,
            json,
            svg,
            synth,
        } => {
            let (results, footprint) =
                simulate_cmd(trace.as_deref(), &capacity, &policy, slack, json, &synth)?;
            if let Some(path) = svg {
                std::fs::write(&path, svg_chart(&results, footprint))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                ctx.ui
                    .status(format_args!("chart written to {}", path.display()));
            }
            Ok(EXIT_OK)
        }
    }
}

fn check(file: &Path, config: &str, ctx: &Ctx) -> Result<u8> {
    let host = host();
    let info = host
        .inspect(file)
        .with_context(|| format!("{} is not a usable component", file.display()))?;
    println!("component  {}", file.display());
    for e in &info.exports {
        println!("exports    {e}");
    }
    // The contract's type-only interface shows up as an import; it carries no functions.
    let (types, foreign): (Vec<&String>, Vec<&String>) = info
        .imports
        .iter()
        .partition(|i| i.starts_with("larder:policy/types@"));
    for i in types {
        println!("imports    {i} (types only)");
    }
    for i in &foreign {
        println!("imports    {i}");
    }
    if !foreign.is_empty() {
        let foreign: Vec<&str> = foreign.iter().map(|s| s.as_str()).collect();
        bail!(
            "policies must import nothing (no WASI): this one imports {}",
            foreign.join(", ")
        );
    }
    let has = |iface: &str| {
        info.exports
            .iter()
            .any(|e| e.starts_with(&format!("larder:policy/{iface}@")))
    };
    let mut kinds = 0;
    if has("eviction") {
        kinds += 1;
        let p = host.eviction(file, config)?;
        let mut c = Candidates::default();
        for i in 0..10_000u64 {
            c.push(
                i,
                1 + (i * 7919) % 100_000,
                i,
                10_000 + (i * 104_729) % 10_000,
                i % 7,
                i % 1000,
            );
        }
        let goal = EvictionGoal {
            bytes: c.size.iter().sum::<u64>() / 10,
            entries: 0,
        };
        let t = Instant::now();
        let v = p.try_select_victims(&c, goal, 30_000)?;
        let took = t.elapsed();
        validate_victims(p.name(), &v, c.len())?;
        let freed: u64 = v.iter().map(|&i| c.size[i]).sum();
        let lru = Lru.select_victims(&c, goal, 30_000)?;
        println!(
            "eviction   {}: {} ({}); freeing 10% of 10,000 sample entries took {:.1} ms: {} victims, {} ({}% overlap with LRU)",
            p.name(),
            if p.wants_events() {
                "stateful, events"
            } else {
                "snapshot"
            },
            if freed >= goal.bytes {
                "goal met"
            } else {
                "GOAL NOT MET"
            },
            took.as_secs_f64() * 1e3,
            v.len(),
            format_size(freed),
            overlap(&v, &lru)
        );
    }
    if has("admission") {
        kinds += 1;
        let p = host.admission(file, config)?;
        let small = p.try_admit(
            AdmissionCandidate {
                size: 4096,
                cost_ms: 1000,
                created_ms: 0,
            },
            0,
        )?;
        let big = p.try_admit(
            AdmissionCandidate {
                size: 1 << 30,
                cost_ms: 1000,
                created_ms: 0,
            },
            0,
        )?;
        println!(
            "admission  {}: a 4 KiB output {}, a 1 GiB output {}",
            p.name(),
            if small { "admitted" } else { "refused" },
            if big { "admitted" } else { "refused" }
        );
    }
    if has("normalize") {
        kinds += 1;
        let root = ctx.cwd.display().to_string();
        let home = std::env::var("HOME").ok();
        let n = host.normalizer(
            file,
            config,
            NormalizeContext {
                workspace_root: root.clone(),
                home_dir: home,
                target_dir: None,
                host_os: std::env::consts::OS.to_owned(),
            },
        )?;
        let sample = format!("{root}/src/main.c");
        println!(
            "normalize  id {}: {sample} -> {}",
            &n.id().to_hex()[..16],
            n.normalize_path(&sample)?
        );
    }
    if kinds == 0 {
        bail!(
            "{} exports no larder:policy interface (eviction, admission or normalize)",
            file.display()
        );
    }
    println!("ok");
    Ok(EXIT_OK)
}

/// Percentage of `a` also in `b`.
fn overlap(a: &[usize], b: &[usize]) -> u64 {
    if a.is_empty() {
        return 100;
    }
    let b: std::collections::HashSet<usize> = b.iter().copied().collect();
    (a.iter().filter(|i| b.contains(i)).count() * 100 / a.len()) as u64
}

enum Loaded {
    Lru,
    Belady,
    BeladySize,
    Wasm(Box<WasmEviction>),
}

fn simulate_cmd(
    trace: Option<&Path>,
    capacities: &[String],
    policies: &[String],
    slack: f64,
    json: bool,
    synth: &Synth,
) -> Result<(Vec<SimResult>, u64)> {
    let trace = match trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Trace::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => synth.trace(),
    };
    let (keys, footprint) = trace.footprint();
    let capacities: Vec<u64> = if capacities.is_empty() {
        [5, 10, 20, 40]
            .iter()
            .map(|p| footprint * p / 100)
            .collect()
    } else {
        capacities
            .iter()
            .map(|c| match c.strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .map(|p| (footprint as f64 * p / 100.0) as u64)
                    .with_context(|| format!("bad capacity {c:?}")),
                None => parse_size(c).with_context(|| format!("bad capacity {c:?}")),
            })
            .collect::<Result<_>>()?
    };
    let host = host();
    let mut loaded = Vec::new();
    let names: Vec<String> = if policies.is_empty() {
        vec!["lru".into()]
    } else {
        policies.to_vec()
    };
    for spec in &names {
        loaded.push(match spec.as_str() {
            "lru" => Loaded::Lru,
            "belady" => Loaded::Belady,
            "belady-size" => Loaded::BeladySize,
            _ => {
                let (path, config) = match spec.split_once(".wasm:") {
                    Some((p, c)) => (format!("{p}.wasm"), c.to_owned()),
                    None => (spec.clone(), String::new()),
                };
                Loaded::Wasm(Box::new(
                    host.eviction(Path::new(&path), &config)
                        .with_context(|| format!("cannot load policy {spec}"))?,
                ))
            }
        });
    }
    let has_belady = loaded.iter().any(|l| matches!(l, Loaded::Belady));
    let mut all: Vec<SimResult> = Vec::new();
    if !json {
        println!(
            "trace: {} requests, {keys} distinct entries, footprint {}",
            trace.requests.len(),
            format_size(footprint)
        );
    }
    for &cap in &capacities {
        let mut rows = Vec::new();
        for l in &loaded {
            let p = match l {
                Loaded::Lru => SimPolicy::Policy(&Lru),
                Loaded::Belady => SimPolicy::Belady,
                Loaded::BeladySize => SimPolicy::BeladySize,
                Loaded::Wasm(w) => {
                    // Each capacity starts from a fresh instance: no state carried over.
                    w.reset()
                        .with_context(|| format!("cannot restart {}", w.name()))?;
                    SimPolicy::Policy(w.as_ref())
                }
            };
            rows.push(simulate(&trace, cap, slack, p));
        }
        // Belady as the reference column, computed even when not asked for.
        let belady = if has_belady {
            None
        } else {
            Some(simulate(&trace, cap, slack, SimPolicy::Belady))
        };
        if !json {
            println!(
                "\ncapacity {} ({:.1}% of the footprint)",
                format_size(cap),
                100.0 * cap as f64 / footprint.max(1) as f64
            );
            println!(
                "  {:<28} {:>9} {:>9} {:>16} {:>10}",
                "policy", "hit", "byte hit", "recompute saved", "fallbacks"
            );
            for r in rows.iter().chain(belady.iter()) {
                println!(
                    "  {:<28} {:>8.2}% {:>8.2}% {:>14.1} s {:>10}",
                    r.policy,
                    100.0 * r.hit_ratio(),
                    100.0 * r.byte_hit_ratio(),
                    r.cost_saved_ms as f64 / 1000.0,
                    r.fallbacks
                );
            }
        }
        all.extend(rows);
        all.extend(belady);
    }
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|r| {
                serde_json::json!({
                    "policy": r.policy,
                    "capacity": r.capacity,
                    "requests": r.requests,
                    "hits": r.hits,
                    "hit_ratio": r.hit_ratio(),
                    "byte_hit_ratio": r.byte_hit_ratio(),
                    "recompute_seconds_saved": r.cost_saved_ms as f64 / 1000.0,
                    "evictions": r.evictions,
                    "fallbacks": r.fallbacks,
                })
            })
            .collect();
        println!("{:#}", serde_json::Value::Array(v));
    } else {
        println!(
            "\nbelady: furthest next use (optimal for equal sizes with --slack 0; a heuristic for variable sizes)"
        );
    }
    Ok((all, footprint))
}

#[cfg(test)]
mod tests {
    use larder_policy::testing::built_policy as built;

    use super::*;
    use crate::progress::Ui;

    fn ctx() -> Ctx {
        Ctx {
            ui: Ui::new(0, true),
            cwd: std::env::temp_dir(),
            flags: Vec::new(),
            config_flag: None,
        }
    }

    fn small() -> Synth {
        Synth {
            tasks: 300,
            builds: 10,
            per_build: 100,
            zipf: 0.9,
            churn: 0.02,
            seed: 7,
        }
    }

    #[test]
    fn simulate_runs_native_policies_on_a_synthetic_trace() {
        let policies = [
            "lru".to_owned(),
            "belady".to_owned(),
            "belady-size".to_owned(),
        ];
        let caps = ["10%".to_owned(), "1M".to_owned()];
        let (results, footprint) =
            simulate_cmd(None, &caps, &policies, 0.02, true, &small()).unwrap();
        assert_eq!(results.len(), 6);
        assert!(svg_chart(&results, footprint).contains("belady-size"));
        let bad = simulate_cmd(None, &["lots".to_owned()], &policies, 0.02, true, &small());
        assert!(bad.unwrap_err().to_string().contains("bad capacity"));
    }

    #[test]
    fn check_and_simulate_real_components() {
        let (Some(lru), Some(gdsf), Some(ttl), Some(size_cap), Some(prefix)) = (
            built("lru"),
            built("gdsf"),
            built("ttl"),
            built("size-cap"),
            built("prefix"),
        ) else {
            return;
        };
        for p in [&lru, &gdsf, &size_cap, &prefix] {
            assert_eq!(check(p, "", &ctx()).unwrap(), EXIT_OK, "{}", p.display());
        }
        let e = check(&lru, "nonsense", &ctx());
        assert!(e.is_ok(), "lru ignores its config");
        let e = check(&gdsf, "nonsense=1", &ctx()).unwrap_err();
        assert!(format!("{e:#}").contains("unknown setting"), "{e:#}");
        let spec = format!("{}:ttl-ms=3600000", ttl.display());
        let policies = [
            "lru".to_owned(),
            lru.display().to_string(),
            gdsf.display().to_string(),
            spec,
        ];
        let (results, _) =
            simulate_cmd(None, &["20%".to_owned()], &policies, 0.02, false, &small()).unwrap();
        // The four asked for, and Belady for reference.
        assert_eq!(results.len(), 5);
        assert!(results.iter().all(|r| r.fallbacks == 0), "{results:?}");
        assert_eq!(
            results[0].hits, results[1].hits,
            "wasm lru simulates like lru"
        );
    }
}

//! Trace-driven cache simulation: replay a request trace against eviction policies at a given
//! capacity and compare hit ratio, byte hit ratio and recompute time saved, next to Belady's
//! clairvoyant policy. Also a generator of synthetic build traces, so policies can be compared
//! without a recorded trace.
//!
//! The simulated cache admits every miss (the task ran; its outputs are stored) and, when it
//! goes over capacity, trims down to `capacity × (1 − slack)` through the policy's
//! [`EvictionPolicy::select_victims`], exactly as a store's trim does (victims validated;
//! the store stops once the goal is met).
//!
//! **Belady** evicts the entries whose next request is furthest in the future (never-again
//! first). With equal sizes and `slack = 0` (one eviction per miss) that is Belady's optimal
//! policy; with variable sizes or batched trims it is the usual furthest-next-use heuristic,
//! not an exact optimum (that problem is NP-hard). **belady-size** ranks by
//! `size × distance to the next use` instead, which does better on hit ratio with variable
//! sizes; neither is an upper bound there.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;

use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru, validate_victims};
use larder_core::trace::TraceOp;

/// One request: a task asked for its outputs at `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// When, ms (any epoch; only differences and order matter).
    pub time_ms: u64,
    /// The entry's key (a hash of the signature).
    pub key: u64,
    /// Bytes the entry takes.
    pub size: u64,
    /// What a miss costs: the task's run time, ms.
    pub cost_ms: u64,
}

/// A request trace, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The requests.
    pub requests: Vec<Request>,
}

/// A malformed trace line.
#[derive(Debug, thiserror::Error)]
#[error("trace line {line}: {reason}")]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

const TRACE_HEADER: &str = "# larder trace v1: time_ms,key,size,cost_ms";

impl Trace {
    /// Parse the text format: one `time_ms,key,size,cost_ms[,op]` line per record (`key` in
    /// decimal or `0x` hex); blank lines and `#` comments are ignored.
    ///
    /// Without `op` (version 1), a line is a request. With it (version 2, as larder's stores
    /// record: see [`larder_core::trace`]), `get-hit` and `get-miss` lines are the requests, and
    /// `put` lines only say what an entry weighs: a miss takes its size and cost from the next
    /// `put` of its key (else from any other record of it). A miss whose key is never seen with a
    /// size (its task failed, or its entry was not admitted) is left out: no cache could have
    /// served it. A `put` with no miss before it (`larder put`) is not a request.
    ///
    /// # Errors
    /// A line without four numbers (and an optional known op).
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        // Requests, with whether their size is known yet.
        let mut requests: Vec<(Request, bool)> = Vec::new();
        // Misses waiting for the put that tells their size, by key.
        let mut waiting: HashMap<u64, Vec<usize>> = HashMap::new();
        // The last known (size, cost) of each key.
        let mut known: HashMap<u64, (u64, u64)> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| TraceError {
                line: i + 1,
                reason,
            };
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 4 && f.len() != 5 {
                return Err(err(format!("expected 4 or 5 fields, found {}", f.len())));
            }
            let num = |s: &str| -> Result<u64, TraceError> {
                let r = match s.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => s.parse(),
                };
                r.map_err(|_| err(format!("{s:?} is not a number")))
            };
            let r = Request {
                time_ms: num(f[0])?,
                key: num(f[1])?,
                size: num(f[2])?,
                cost_ms: num(f[3])?,
            };
            let op = match f.get(4) {
                None => None,
                Some(op) => Some(op.parse::<TraceOp>().map_err(|e| err(e.to_string()))?),
            };
            match op {
                None | Some(TraceOp::GetHit) => {
                    known.insert(r.key, (r.size, r.cost_ms));
                    requests.push((r, true));
                }
                Some(TraceOp::GetMiss) => {
                    waiting.entry(r.key).or_default().push(requests.len());
                    requests.push((r, false));
                }
                Some(TraceOp::Put) => {
                    known.insert(r.key, (r.size, r.cost_ms));
                    for at in waiting.remove(&r.key).unwrap_or_default() {
                        let (req, resolved) = &mut requests[at];
                        (req.size, req.cost_ms, *resolved) = (r.size, r.cost_ms, true);
                    }
                }
            }
        }
        let requests = requests
            .into_iter()
            .filter_map(|(mut r, resolved)| {
                if resolved {
                    return Some(r);
                }
                let (size, cost) = known.get(&r.key)?;
                (r.size, r.cost_ms) = (*size, *cost);
                Some(r)
            })
            .collect();
        Ok(Trace { requests })
    }

    /// Write the text format [`Trace::parse`] reads.
    ///
    /// # Errors
    /// Write errors.
    pub fn write(&self, mut w: impl Write) -> std::io::Result<()> {
        writeln!(w, "{TRACE_HEADER}")?;
        for r in &self.requests {
            writeln!(w, "{},{:#x},{},{}", r.time_ms, r.key, r.size, r.cost_ms)?;
        }
        Ok(())
    }

    /// Distinct keys and their total size (the capacity at which nothing is ever evicted).
    pub fn footprint(&self) -> (usize, u64) {
        let mut seen = HashMap::new();
        for r in &self.requests {
            seen.entry(r.key).or_insert(r.size);
        }
        (seen.len(), seen.values().sum())
    }
}

/// A generator of synthetic build traces.
///
/// A project of `tasks` build steps (compile, link, codegen), each with a size (log-normal-ish,
/// 1 KiB to 64 MiB, most small) and a run time (50 ms to 2 min, loosely growing with size).
/// `builds` successive builds run, one a minute; each requests `tasks_per_build` distinct
/// tasks drawn by Zipf popularity (exponent `zipf`: a few tasks are in every build, most only
/// sometimes). Before each build every task's inputs change with probability `churn`, giving
/// it a new key (a miss no policy can avoid).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticTrace {
    /// Distinct build steps in the project.
    pub tasks: usize,
    /// Successive builds.
    pub builds: usize,
    /// Tasks each build requests.
    pub tasks_per_build: usize,
    /// Zipf exponent of task popularity.
    pub zipf: f64,
    /// Per-build probability that a task's inputs changed.
    pub churn: f64,
    /// Random seed (same seed, same trace).
    pub seed: u64,
}

impl Default for SyntheticTrace {
    fn default() -> Self {
        SyntheticTrace {
            tasks: 5_000,
            builds: 200,
            tasks_per_build: 1_000,
            zipf: 0.9,
            churn: 0.02,
            seed: 1,
        }
    }
}

/// splitmix64: small, fast, good enough for traces.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng(a.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ b).next()
}

impl SyntheticTrace {
    /// Generate the trace.
    pub fn generate(&self) -> Trace {
        let mut rng = Rng(self.seed);
        let tasks = self.tasks.max(1);
        // Sizes: log-uniform, squared towards small (most outputs are object files).
        let (lo, hi) = ((1u64 << 10) as f64, (64u64 << 20) as f64);
        let mut size = Vec::with_capacity(tasks);
        let mut cost = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let u = rng.unit();
            let s = (lo.ln() + u * u * (hi.ln() - lo.ln())).exp();
            size.push(s as u64);
            // Cost grows loosely with size (u^2 shared), with its own spread of ~100x.
            let v = (0.6 * u * u + 0.4 * rng.unit()).clamp(0.0, 1.0);
            let c = (50f64.ln() + v * (120_000f64.ln() - 50f64.ln())).exp();
            cost.push(c as u64);
        }
        // Popularity: task ranks shuffled so popularity is independent of size and cost.
        let mut rank: Vec<usize> = (0..tasks).collect();
        for i in (1..tasks).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            rank.swap(i, j);
        }
        let mut cdf = Vec::with_capacity(tasks);
        let mut acc = 0.0;
        for r in 1..=tasks {
            acc += 1.0 / (r as f64).powf(self.zipf);
            cdf.push(acc);
        }
        let mut version = vec![0u64; tasks];
        let mut requests = Vec::with_capacity(self.builds * self.tasks_per_build);
        let per_build = self.tasks_per_build.min(tasks);
        let mut in_build = vec![u64::MAX; tasks];
        for b in 0..self.builds {
            for v in version.iter_mut() {
                if rng.unit() < self.churn {
                    *v += 1;
                }
            }
            let start = b as u64 * 60_000;
            let mut chosen = 0;
            let mut tries = 0;
            while chosen < per_build && tries < per_build * 50 {
                tries += 1;
                let u = rng.unit() * acc;
                let r = cdf.partition_point(|&c| c < u).min(tasks - 1);
                let t = rank[r];
                if in_build[t] == b as u64 {
                    continue;
                }
                in_build[t] = b as u64;
                requests.push(Request {
                    time_ms: start + chosen as u64,
                    key: mix(t as u64, version[t]),
                    size: size[t],
                    cost_ms: cost[t],
                });
                chosen += 1;
            }
        }
        Trace { requests }
    }
}

/// A policy to simulate.
#[derive(Debug, Clone, Copy)]
pub enum SimPolicy<'a> {
    /// Any eviction policy (native or WebAssembly).
    Policy(&'a dyn EvictionPolicy),
    /// The clairvoyant furthest-next-use policy (see the module docs).
    Belady,
    /// A size-aware clairvoyant heuristic for variable sizes: evict the largest
    /// `size × time to next use` first (never-again first).
    BeladySize,
}

impl SimPolicy<'_> {
    fn name(&self) -> String {
        match self {
            SimPolicy::Policy(p) => p.name().to_owned(),
            SimPolicy::Belady => "belady".to_owned(),
            SimPolicy::BeladySize => "belady-size".to_owned(),
        }
    }
}

/// The outcome of one simulation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimResult {
    /// The policy.
    pub policy: String,
    /// The capacity simulated, bytes.
    pub capacity: u64,
    /// Requests replayed.
    pub requests: u64,
    /// Requests that hit.
    pub hits: u64,
    /// Bytes requested.
    pub bytes_requested: u64,
    /// Bytes served from the cache.
    pub bytes_hit: u64,
    /// Task run time the hits saved, ms.
    pub cost_saved_ms: u64,
    /// Task run time of all requests, ms (what no cache would cost).
    pub cost_total_ms: u64,
    /// Trims run.
    pub trims: u64,
    /// Entries evicted.
    pub evictions: u64,
    /// Trims where the policy failed and native LRU chose (should be 0).
    pub fallbacks: u64,
}

impl SimResult {
    /// Hits per request.
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }
    /// Bytes hit per byte requested.
    pub fn byte_hit_ratio(&self) -> f64 {
        self.bytes_hit as f64 / self.bytes_requested.max(1) as f64
    }
}

impl fmt::Display for SimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<24} hit {:>6.2}%  byte hit {:>6.2}%  recompute saved {:>10.1} s",
            self.policy,
            100.0 * self.hit_ratio(),
            100.0 * self.byte_hit_ratio(),
            self.cost_saved_ms as f64 / 1000.0
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    size: u64,
    created: u64,
    last_access: u64,
    hits: u64,
    cost: u64,
    next_use: u64,
}

/// Replay `trace` against `policy` with `capacity` bytes, trimming to
/// `capacity × (1 − slack)` whenever it is exceeded.
pub fn simulate(trace: &Trace, capacity: u64, slack: f64, policy: SimPolicy<'_>) -> SimResult {
    let reqs = &trace.requests;
    // next[i]: index of the next request for the same key (u64::MAX: never).
    let mut next = vec![u64::MAX; reqs.len()];
    let mut last_seen: HashMap<u64, usize> = HashMap::new();
    for (i, r) in reqs.iter().enumerate().rev() {
        if let Some(&j) = last_seen.get(&r.key) {
            next[i] = j as u64;
        }
        last_seen.insert(r.key, i);
    }
    drop(last_seen);
    let low = (capacity as f64 * (1.0 - slack.clamp(0.0, 0.99))) as u64;
    let mut res = SimResult {
        policy: policy.name(),
        capacity,
        ..SimResult::default()
    };
    let mut cache: HashMap<u64, Cached> = HashMap::new();
    let mut used = 0u64;
    for (i, r) in reqs.iter().enumerate() {
        res.requests += 1;
        res.bytes_requested += r.size;
        res.cost_total_ms += r.cost_ms;
        if let Some(e) = cache.get_mut(&r.key) {
            res.hits += 1;
            res.bytes_hit += e.size;
            res.cost_saved_ms += e.cost;
            e.hits += 1;
            e.last_access = r.time_ms;
            e.next_use = next[i];
            continue;
        }
        if r.size > capacity {
            continue;
        }
        cache.insert(
            r.key,
            Cached {
                size: r.size,
                created: r.time_ms,
                last_access: r.time_ms,
                hits: 0,
                cost: r.cost_ms,
                next_use: next[i],
            },
        );
        used += r.size;
        let now_index = i as u64;
        if used > capacity {
            res.trims += 1;
            let goal = EvictionGoal {
                bytes: used - low,
                entries: 0,
            };
            let mut c = Candidates::default();
            let mut next_use = Vec::with_capacity(cache.len());
            for (&k, e) in &cache {
                c.push(k, e.size, e.created, e.last_access, e.hits, e.cost);
                next_use.push(e.next_use);
            }
            let victims = match policy {
                SimPolicy::Policy(p) => match p.select_victims(&c, goal, r.time_ms) {
                    Ok(v) if validate_victims(p.name(), &v, c.len()).is_ok() => v,
                    _ => {
                        res.fallbacks += 1;
                        Lru.select_victims(&c, goal, r.time_ms).unwrap_or_default()
                    }
                },
                SimPolicy::Belady => {
                    let mut order: Vec<usize> = (0..c.len()).collect();
                    order.sort_unstable_by_key(|&i| (std::cmp::Reverse(next_use[i]), c.ids[i]));
                    order
                }
                SimPolicy::BeladySize => {
                    // Request indices stand in for time: what matters is the order.
                    let score = |i: usize| match next_use[i] {
                        u64::MAX => u128::MAX,
                        n => u128::from(n.saturating_sub(now_index)) * u128::from(c.size[i]),
                    };
                    let mut order: Vec<usize> = (0..c.len()).collect();
                    order.sort_unstable_by_key(|&i| (std::cmp::Reverse(score(i)), c.ids[i]));
                    order
                }
            };
            let mut freed = 0u64;
            for v in victims {
                if freed >= goal.bytes {
                    break;
                }
                if let Some(e) = cache.remove(&c.ids[v]) {
                    freed += e.size;
                    used -= e.size;
                    res.evictions += 1;
                }
            }
        }
    }
    res
}

/// An SVG line chart of hit ratio against capacity, one line per policy (in the order the
/// policies first appear in `results`). Capacities are shown as a share of `footprint`.
pub fn svg_chart(results: &[SimResult], footprint: u64) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 190.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    const COLORS: [&str; 8] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let share = |c: u64| 100.0 * c as f64 / footprint.max(1) as f64;
    let max_x = results
        .iter()
        .map(|r| share(r.capacity))
        .fold(1.0f64, f64::max);
    let x = |v: f64| LEFT + (W - LEFT - RIGHT) * v / max_x;
    let y = |ratio: f64| TOP + (H - TOP - BOTTOM) * (1.0 - ratio);
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !names.contains(&r.policy.as_str()) {
            names.push(&r.policy);
        }
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"18\" font-size=\"14\">hit ratio against cache capacity</text>\n"
    );
    for i in 0..=10 {
        let v = f64::from(i) / 10.0;
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>\n",
            W - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            i * 10
        ));
    }
    for i in 0..=5 {
        let v = max_x * f64::from(i) / 5.0;
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.0}%</text>\n",
            x(v),
            H - BOTTOM + 18.0
        ));
    }
    out.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">capacity (share of the trace's footprint)</text>\n",
        (LEFT + W - RIGHT) / 2.0,
        H - 10.0
    ));
    for (n, name) in names.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.policy == *name)
            .map(|r| (share(r.capacity), r.hit_ratio()))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|&(cx, r)| format!("{:.1},{:.1}", x(cx), y(r)))
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        ));
        for &(cx, r) in &pts {
            out.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                x(cx),
                y(r)
            ));
        }
        let ly = TOP + 18.0 * n as f64;
        out.push_str(&format!(
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            W - RIGHT + 12.0,
            W - RIGHT + 32.0,
            W - RIGHT + 38.0,
            ly + 4.0,
            esc(name)
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_round_trip_through_text() {
        let t = SyntheticTrace {
            tasks: 50,
            builds: 3,
            tasks_per_build: 20,
            ..SyntheticTrace::default()
        }
        .generate();
        assert_eq!(t.requests.len(), 60);
        let mut text = Vec::new();
        t.write(&mut text).unwrap();
        let back = Trace::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(Trace::parse("1,2,3").is_err());
    }

    #[test]
    fn recorded_traces_take_miss_sizes_from_the_next_put() {
        let text = "# larder trace v2: time_ms,key,size,cost_ms,op
1,0xa,0,0,get-miss
2,0xa,100,40,put
3,0xa,100,40,get-hit
4,0xb,0,0,get-miss
5,0xc,7,3,put
6,0xb,0,0,get-miss
7,0xb,50,9,put
8,0xd,0,0,get-miss
9,0x1,2,3
";
        let t = Trace::parse(text).unwrap();
        let got: Vec<(u64, u64, u64, u64)> = t
            .requests
            .iter()
            .map(|r| (r.time_ms, r.key, r.size, r.cost_ms))
            .collect();
        // `c` was only put (not a request); `d` never got a size (not storable): both left out.
        assert_eq!(
            got,
            [
                (1, 0xa, 100, 40),
                (3, 0xa, 100, 40),
                (4, 0xb, 50, 9),
                (6, 0xb, 50, 9),
                (9, 0x1, 2, 3)
            ]
        );
        let err = Trace::parse("1,0xa,0,0,delete").unwrap_err();
        assert!(err.to_string().contains("delete"), "{err}");
    }

    #[test]
    fn belady_beats_lru_on_a_loop_and_equal_sizes() {
        // A loop over 4 keys with room for 3: LRU always misses, Belady hits 2 of 3.
        let mut t = Trace::default();
        for i in 0..400u64 {
            t.requests.push(Request {
                time_ms: i,
                key: i % 4,
                size: 10,
                cost_ms: 1,
            });
        }
        let lru = simulate(&t, 30, 0.0, SimPolicy::Policy(&Lru));
        let opt = simulate(&t, 30, 0.0, SimPolicy::Belady);
        assert_eq!(lru.hits, 0);
        assert!(opt.hit_ratio() > 0.6, "{opt}");
        // Unlimited capacity: only the first request of each key misses.
        let all = simulate(&t, 1000, 0.0, SimPolicy::Policy(&Lru));
        assert_eq!(all.hits, 396);
        let svg = svg_chart(&[lru, opt, all], 40);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2, "one line per policy");
    }
}

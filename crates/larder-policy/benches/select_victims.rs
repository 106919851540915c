//! `select-victims` over 1,000,000 entries: the wasm `lru` policy against the native `Lru`
//! (issue target: within 1.3x), plus the cost of the snapshot crossing alone (a policy that
//! returns nothing) and a stateful policy's event sync.
//!
//! Run: `cargo xtask policies && cargo bench -p larder-policy --bench select_victims`
//! (`-- --quick` for fewer repetitions). Needs the components in `target/policies/`.

use std::time::{Duration, Instant};

use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru};
use larder_policy::testing::built_policy;
use larder_policy::{Limits, PolicyHost};

const N: usize = 1_000_000;

fn candidates(n: usize) -> Candidates {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut c = Candidates::default();
    for i in 0..n {
        let created = 1_700_000_000_000 + next() % 10_000_000;
        c.push(
            i as u64,
            1 + next() % (1 << 20),
            created,
            created + next() % 1_000_000,
            next() % 50,
            next() % 60_000,
        );
    }
    c
}

/// Median wall time of `reps` runs.
fn median(reps: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(reps);
    let mut out = 0;
    for _ in 0..reps {
        let t = Instant::now();
        out = std::hint::black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[reps / 2], out)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then a small smoke run is enough.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if smoke {
        1
    } else if quick {
        3
    } else {
        11
    };
    let n = if smoke { 10_000 } else { N };
    let Some(lru_wasm) = built_policy("lru") else {
        return;
    };
    let host = PolicyHost::new().with_limits(Limits {
        call_timeout: Duration::from_secs(30),
        max_memory: 1 << 30,
    });
    let wasm = host.eviction(&lru_wasm, "").expect("load lru.wasm");
    let c = candidates(n);
    let total: u64 = c.size.iter().sum();
    println!("select-victims over {n} entries, median of {reps}:");
    println!(
        "{:<28} {:>11} {:>11} {:>7}",
        "goal", "native", "wasm", "ratio"
    );
    for (label, goal) in [
        (
            "1% of bytes",
            EvictionGoal {
                bytes: total / 100,
                entries: 0,
            },
        ),
        (
            "10% of bytes",
            EvictionGoal {
                bytes: total / 10,
                entries: 0,
            },
        ),
        (
            "50% of bytes",
            EvictionGoal {
                bytes: total / 2,
                entries: 0,
            },
        ),
        (
            "all entries",
            EvictionGoal {
                bytes: 0,
                entries: n as u64,
            },
        ),
    ] {
        let (native, nv) = median(reps, || Lru.select_victims(&c, goal, 0).unwrap().len());
        let (w, wv) = median(reps, || {
            wasm.try_select_victims(&c, goal, 0)
                .expect("wasm lru")
                .len()
        });
        assert_eq!(nv, wv, "wasm and native disagree on {label}");
        println!(
            "{label:<28} {:>9.1}ms {:>9.1}ms {:>6.2}x",
            native.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            w.as_secs_f64() / native.as_secs_f64()
        );
    }
    // The boundary alone: the snapshot crossing into the guest and an empty answer back.
    let zero = EvictionGoal::default();
    let (cross, _) = median(reps, || wasm.try_select_victims(&c, zero, 0).unwrap().len());
    println!(
        "{:<28} {:>21.1}ms",
        "snapshot crossing (goal 0)",
        cross.as_secs_f64() * 1e3
    );
}

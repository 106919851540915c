//! The simulator on a synthetic build trace, with the real wasm policies: the wasm `lru`
//! simulates exactly like the native one, and `gdsf` saves more recompute time than LRU at every
//! capacity from 2.5% to 40% of the footprint (as much, where LRU already equals Belady's).
//! Skips without the built policies (fails under CI), like `tests/guests.rs`.

use larder_core::eviction::Lru;
use larder_policy::PolicyHost;
use larder_policy::sim::{SimPolicy, SimResult, SyntheticTrace, simulate};
use larder_policy::testing::built_policy;

#[test]
fn gdsf_saves_more_recompute_time_than_lru_and_wasm_lru_simulates_like_native() {
    let (Some(lru_wasm), Some(gdsf_wasm), Some(lfu_wasm), Some(wtinylfu_wasm)) = (
        built_policy("lru"),
        built_policy("gdsf"),
        built_policy("lfu"),
        built_policy("wtinylfu"),
    ) else {
        return;
    };
    let trace = SyntheticTrace {
        tasks: 2_000,
        builds: 60,
        tasks_per_build: 400,
        ..SyntheticTrace::default()
    }
    .generate();
    let (_, footprint) = trace.footprint();
    let host = PolicyHost::new();
    let lru = host.eviction(&lru_wasm, "").unwrap();
    let gdsf = host.eviction(&gdsf_wasm, "").unwrap();
    let lfu = host.eviction(&lfu_wasm, "").unwrap();
    let wtinylfu = host.eviction(&wtinylfu_wasm, "").unwrap();
    for permille in [25, 50, 100, 200, 400] {
        let capacity = footprint * permille / 1000;
        for w in [&lru, &gdsf, &lfu, &wtinylfu] {
            w.reset().unwrap();
        }
        let run = |p| simulate(&trace, capacity, 0.02, p);
        let native: SimResult = run(SimPolicy::Policy(&Lru));
        let results = [
            native.clone(),
            run(SimPolicy::Policy(&lru)),
            run(SimPolicy::Policy(&lfu)),
            run(SimPolicy::Policy(&gdsf)),
            run(SimPolicy::Policy(&wtinylfu)),
            run(SimPolicy::Belady),
            run(SimPolicy::BeladySize),
        ];
        eprintln!("capacity {}% of the footprint:", permille as f64 / 10.0);
        for r in &results {
            eprintln!("  {r}  fallbacks {}", r.fallbacks);
            assert_eq!(r.fallbacks, 0, "{r}");
        }
        let wasm_lru = &results[1];
        assert_eq!(
            (wasm_lru.hits, wasm_lru.bytes_hit, wasm_lru.evictions),
            (native.hits, native.bytes_hit, native.evictions)
        );
        // A reset policy simulates the same again (no state carried over).
        gdsf.reset().unwrap();
        wtinylfu.reset().unwrap();
        assert_eq!(run(SimPolicy::Policy(&gdsf)), results[3]);
        assert_eq!(run(SimPolicy::Policy(&wtinylfu)), results[4]);
        let (g, belady) = (&results[3], &results[5]);
        // Where LRU saves as much as Belady's furthest-next-use, no policy can save more.
        let lru_is_optimal = native.cost_saved_ms >= belady.cost_saved_ms;
        assert!(
            g.cost_saved_ms > native.cost_saved_ms
                || (lru_is_optimal && g.cost_saved_ms == native.cost_saved_ms),
            "at {permille}‰: gdsf saved {} s, lru {} s, belady {} s",
            g.cost_saved_ms / 1000,
            native.cost_saved_ms / 1000,
            belady.cost_saved_ms / 1000
        );
    }
}

//! The shipped guest policies and the hostile test guests, run for real: the `.wasm` files
//! built by `cargo xtask policies` (into `target/policies/`). Without them these tests skip,
//! except under CI (`CI` set), where a missing policy fails.

use std::time::{Duration, Instant};

use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru};
use larder_core::normalize::PathNormalizer;
use larder_policy::testing::built_policy;
use larder_policy::{
    AdmissionCandidate, Limits, NormalizeContext, PolicyError, PolicyHost, WasmEviction,
};

macro_rules! need {
    ($name:expr) => {
        match built_policy($name) {
            Some(p) => p,
            None => return,
        }
    };
}

/// Deterministic pseudo-random candidates with many ties in access and creation times.
fn candidates(n: usize, seed: u64) -> Candidates {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut c = Candidates::default();
    for i in 0..n {
        let created = 1_000_000 + next() % 5_000;
        let last = created + next() % 2_000;
        c.push(
            (i as u64) * 3 + 7,
            1 + next() % 100_000,
            created,
            last,
            next() % 20,
            next() % 5_000,
        );
    }
    c
}

fn goal(bytes: u64, entries: u64) -> EvictionGoal {
    EvictionGoal { bytes, entries }
}

fn short_limits() -> Limits {
    Limits {
        call_timeout: Duration::from_millis(200),
        max_memory: 64 << 20,
    }
}

#[test]
fn wasm_lru_picks_exactly_the_native_lru_victims() {
    let lru = PolicyHost::new()
        .eviction(&need!("lru"), "")
        .expect("load lru.wasm");
    for (n, seed) in [(0, 1), (1, 2), (10, 3), (1000, 4), (50_000, 5)] {
        let c = candidates(n, seed);
        let total: u64 = c.size.iter().sum();
        for g in [
            goal(0, 0),
            goal(1, 0),
            goal(0, 5),
            goal(total / 3, 0),
            goal(total / 10, 50),
            goal(total, 0),
            goal(total + 1, n as u64 + 1),
        ] {
            let want = Lru.select_victims(&c, g, 0).unwrap();
            let got = lru.try_select_victims(&c, g, 0).expect("wasm lru");
            assert_eq!(got, want, "n={n} goal={g:?}");
        }
    }
}

#[test]
fn shipped_eviction_policies_meet_the_goal_with_valid_victims() {
    let host = PolicyHost::new();
    for name in ["lru", "lfu", "gdsf", "ttl", "template", "wtinylfu"] {
        let p = host.eviction(&need!(name), "").expect(name);
        let c = candidates(5_000, 11);
        let total: u64 = c.size.iter().sum();
        for g in [goal(total / 4, 0), goal(0, 100), goal(1, 1)] {
            let v = p.try_select_victims(&c, g, 2_000_000).expect(name);
            let bytes: u64 = v.iter().map(|&i| c.size[i]).sum();
            assert!(
                bytes >= g.bytes && v.len() as u64 >= g.entries,
                "{name} fell short of {g:?}: {} victims, {bytes} bytes",
                v.len()
            );
            larder_core::eviction::validate_victims(name, &v, c.len()).unwrap();
        }
    }
}

#[test]
fn gdsf_keeps_what_is_expensive_to_recompute_per_byte() {
    let gdsf = PolicyHost::new().eviction(&need!("gdsf"), "").unwrap();
    let mut c = Candidates::default();
    // Same size, same use; only the recompute cost differs.
    c.push(1, 1000, 0, 100, 5, 60_000);
    c.push(2, 1000, 0, 100, 5, 10);
    // Expensive, but cheap per byte because it is huge.
    c.push(3, 1_000_000, 0, 100, 5, 60_000);
    let v = gdsf.try_select_victims(&c, goal(0, 2), 200).unwrap();
    assert_eq!(v, vec![1, 2]);
}

#[test]
fn ttl_evicts_every_expired_entry_first() {
    let ttl = PolicyHost::new()
        .eviction(&need!("ttl"), "ttl-ms=1000")
        .unwrap();
    let mut c = Candidates::default();
    c.push(1, 10, 0, 9_500, 0, 0); // fresh
    c.push(2, 10, 0, 100, 0, 0); // expired
    c.push(3, 10, 0, 200, 0, 0); // expired
    let v = ttl.try_select_victims(&c, goal(0, 0), 10_000).unwrap();
    assert_eq!(v, vec![1, 2]);
    let e = PolicyHost::new()
        .eviction(&need!("ttl"), "ttl=5")
        .unwrap_err();
    assert!(
        matches!(e, PolicyError::Init { .. }) && e.to_string().contains("unknown setting"),
        "{e}"
    );
}

#[test]
fn wtinylfu_learns_from_events_and_keeps_popular_entries() {
    let p = PolicyHost::new().eviction(&need!("wtinylfu"), "").unwrap();
    assert!(p.wants_events());
    let mut c = Candidates::default();
    for id in 0..200u64 {
        // Entries 0..20 are popular.
        let hits = if id < 20 { 15 } else { 0 };
        c.push(id, 100, id, 1000 + id, hits, 10);
    }
    p.try_select_victims(&c, goal(0, 0), 2000).unwrap();
    // Later accesses to the popular ones, as the next trim's snapshot shows them.
    for i in 0..20 {
        c.last_access_ms[i] = 5000 + i as u64;
        c.hits[i] += 10;
    }
    let v = p.try_select_victims(&c, goal(0, 100), 6000).unwrap();
    assert_eq!(v.len(), 100);
    assert!(
        v.iter().all(|&i| c.ids[i] >= 20),
        "evicted a popular entry: {v:?}"
    );
}

/// Native LRU's answer, which every failing policy must fall back to.
fn assert_falls_back(p: &WasmEviction) {
    let c = candidates(1000, 9);
    let g = goal(c.size.iter().sum::<u64>() / 5, 0);
    assert_eq!(
        p.select_victims(&c, g, 0).unwrap(),
        Lru.select_victims(&c, g, 0).unwrap()
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_time_budget() {
    let p = PolicyHost::new()
        .with_limits(short_limits())
        .eviction(&need!("hostile-loop"), "")
        .unwrap();
    let c = candidates(100, 1);
    let t = Instant::now();
    let e = p.try_select_victims(&c, goal(1, 0), 0).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(e, PolicyError::Timeout { .. }), "{e}");
    assert!(
        e.to_string().contains("time budget of 200 ms"),
        "unclear: {e}"
    );
    assert_falls_back(&p);
}

#[test]
fn a_1gib_allocation_is_stopped_by_the_memory_cap() {
    let p = PolicyHost::new()
        .with_limits(short_limits())
        .eviction(&need!("hostile-alloc"), "")
        .unwrap();
    let e = p
        .try_select_victims(&candidates(100, 1), goal(1, 0), 0)
        .unwrap_err();
    assert!(matches!(e, PolicyError::MemoryLimit { .. }), "{e}");
    assert!(e.to_string().contains("over the limit"), "unclear: {e}");
    assert_falls_back(&p);
}

#[test]
fn a_panic_is_a_trap_and_three_in_a_row_disable_the_policy() {
    let p = PolicyHost::new()
        .eviction(&need!("hostile-panic"), "")
        .unwrap();
    let c = candidates(100, 1);
    for strike in 1..=3 {
        let e = p.try_select_victims(&c, goal(1, 0), 0).unwrap_err();
        assert!(matches!(e, PolicyError::Trap { .. }), "{e}");
        assert!(e.to_string().contains("hostile-panic"), "unnamed: {e}");
        assert_eq!(p.failures(), strike);
    }
    assert!(p.is_disabled());
    let e = p.try_select_victims(&c, goal(1, 0), 0).unwrap_err();
    assert!(
        matches!(e, PolicyError::Disabled { failures: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("disabled"), "{e}");
    assert_falls_back(&p);
}

#[test]
fn a_trapped_stateful_policy_is_reinstantiated_with_its_entries_replayed() {
    let p = PolicyHost::new()
        .eviction(&need!("hostile-flaky"), "")
        .unwrap();
    assert!(p.wants_events());
    let mut c = Candidates::default();
    for i in 0..500u64 {
        // Distinct access times in a scrambled order.
        c.push(i + 1, 100 + i % 7, 0, 10_000 + (i * 7919) % 500, 1, 5);
    }
    // The first trim tells the guest every entry (as inserts) and frees nothing.
    assert!(p.try_select_victims(&c, goal(0, 0), 0).unwrap().is_empty());
    let e = p.try_select_victims(&c, goal(0, 999), 0).unwrap_err();
    assert!(matches!(e, PolicyError::Trap { .. }), "{e}");
    assert_eq!(p.failures(), 1);
    // The next call runs on a fresh instance that only knows what the host replayed.
    let g = goal(c.size.iter().sum::<u64>() / 4, 0);
    let got = p.try_select_victims(&c, g, 0).unwrap();
    assert!(!got.is_empty());
    assert_eq!(got, Lru.select_victims(&c, g, 0).unwrap());
    assert_eq!(p.failures(), 0, "a success resets the strike count");
}

#[test]
fn invalid_victim_lists_are_rejected() {
    let host = PolicyHost::new();
    let c = candidates(10, 1);
    let p = host.eviction(&need!("hostile-bad-ids"), "").unwrap();
    let e = p.try_select_victims(&c, goal(1, 0), 0).unwrap_err();
    assert!(matches!(e, PolicyError::InvalidAnswer { .. }), "{e}");
    assert!(e.to_string().contains("victim 17 of 10"), "{e}");
    assert_falls_back(&p);

    let p = host.eviction(&need!("hostile-bad-ids"), "ids").unwrap();
    let e = p.try_select_victims(&c, goal(1, 0), 0).unwrap_err();
    assert!(e.to_string().contains("unknown entry id"), "{e}");
    assert_falls_back(&p);
}

#[test]
fn a_component_of_the_wrong_kind_is_refused_clearly() {
    let e = PolicyHost::new().admission(&need!("lru"), "").unwrap_err();
    assert!(matches!(e, PolicyError::WrongShape { .. }), "{e}");
    assert!(e.to_string().contains("not an admission policy"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let e = PolicyHost::new().eviction(&junk, "").unwrap_err();
    assert!(matches!(e, PolicyError::Compile { .. }), "{e}");
}

#[test]
fn size_cap_admission() {
    let p = PolicyHost::new()
        .admission(&need!("size-cap"), "max-bytes=1000; min-cost-ms=50")
        .unwrap();
    let c = |size, cost_ms| AdmissionCandidate {
        size,
        cost_ms,
        created_ms: 0,
    };
    assert!(p.admit(c(1000, 50), 0));
    assert!(!p.admit(c(1001, 50), 0));
    assert!(!p.admit(c(10, 49), 0));
    assert!(p.try_admit(c(10, 100), 0).unwrap());
}

#[test]
fn prefix_normalizer_strips_machine_paths_and_its_id_ignores_the_machine() {
    let path = need!("prefix");
    let ctx = |root: &str| NormalizeContext {
        workspace_root: root.into(),
        home_dir: Some("/home/me".into()),
        target_dir: Some(format!("{root}/target")),
        host_os: "linux".into(),
    };
    let host = PolicyHost::new();
    let a = host
        .normalizer(&path, "/opt/sdk-1.2=>@SDK@", ctx("/ci/run1/src"))
        .unwrap();
    let b = host
        .normalizer(&path, "/opt/sdk-1.2=>@SDK@", ctx("/ci/run2/src"))
        .unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(
        a.normalize_path("/ci/run1/src/lib/x.c").unwrap(),
        "@WS@/lib/x.c"
    );
    assert_eq!(
        b.normalize_path("/ci/run2/src/target/debug/x.o").unwrap(),
        "@TARGET@/debug/x.o"
    );
    assert_eq!(
        a.normalize_path("/usr/include/x.h").unwrap(),
        "/usr/include/x.h"
    );
    assert_eq!(
        a.normalize_value("CFLAGS", "-I/opt/sdk-1.2/include -I/home/me/inc")
            .unwrap(),
        "-I@SDK@/include -I@HOME@/inc"
    );
    // A longer sibling is not below the prefix.
    assert_eq!(
        a.normalize_path("/ci/run1/src2/x").unwrap(),
        "/ci/run1/src2/x"
    );
    let other = host.normalizer(&path, "", ctx("/ci/run1/src")).unwrap();
    assert_ne!(a.id(), other.id(), "the config is part of the rules");
}

#[test]
fn a_failing_normalizer_fails_closed_and_is_disabled_after_three_failures() {
    let n = PolicyHost::new()
        .normalizer(
            &need!("hostile-normalize-panic"),
            "",
            NormalizeContext {
                workspace_root: "/ws".into(),
                ..NormalizeContext::default()
            },
        )
        .unwrap();
    // Never a guessed value: an error, so the task is not cached.
    let e = n.normalize_paths(&["/ws/a.c".to_owned()]).unwrap_err();
    assert!(matches!(e, PolicyError::Trap { .. }), "{e}");
    let e = n
        .normalize_values(&[("CFLAGS".to_owned(), "-O2".to_owned())])
        .unwrap_err();
    assert!(
        e.to_string().contains("2 results for 1 inputs"),
        "unclear: {e}"
    );
    assert!(n.normalize_path("/ws/b.c").is_err());
    assert!(n.is_disabled());
    let e = n.normalize_value("", "x").unwrap_err();
    assert!(e.to_string().contains("disabled"), "{e}");
}

#[test]
fn a_hanging_admission_policy_is_stopped_and_the_entry_admitted() {
    let p = PolicyHost::new()
        .with_limits(short_limits())
        .admission(&need!("hostile-admit-loop"), "")
        .unwrap();
    let c = AdmissionCandidate {
        size: 10,
        cost_ms: 10,
        created_ms: 0,
    };
    let e = p.try_admit(c, 0).unwrap_err();
    assert!(matches!(e, PolicyError::Timeout { .. }), "{e}");
    let t = Instant::now();
    assert!(p.admit(c, 0), "a failing admission policy admits");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn compiled_components_are_cached_on_disk_and_damage_is_recompiled() {
    let path = need!("lru");
    let dir = tempfile::tempdir().unwrap();
    let host = PolicyHost::new().with_cache_dir(dir.path());
    host.eviction(&path, "").unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));
    // Loaded from the cache.
    let t = Instant::now();
    let p = host.eviction(&path, "").unwrap();
    eprintln!("load from cache: {:?}", t.elapsed());
    assert_falls_back_to_nothing(&p);
    // A damaged artifact is never handed to wasmtime: it is recompiled and replaced.
    let mut bytes = std::fs::read(&cached[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached[0], &bytes).unwrap();
    let p = host.eviction(&path, "").unwrap();
    assert_falls_back_to_nothing(&p);
    assert_ne!(std::fs::read(&cached[0]).unwrap(), bytes);
}

/// A working policy answers by itself (no failures counted).
fn assert_falls_back_to_nothing(p: &WasmEviction) {
    let c = candidates(100, 3);
    let g = goal(1000, 0);
    assert_eq!(
        p.try_select_victims(&c, g, 0).unwrap(),
        Lru.select_victims(&c, g, 0).unwrap()
    );
    assert_eq!(p.failures(), 0);
}

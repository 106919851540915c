//! A WebAssembly eviction policy chosen in the configuration changes what `larder trim` keeps.
//! The policies are built by `cargo xtask policies` (into `target/policies/`); without them
//! this test skips, except under CI, where that is a failure.

mod common;

use common::{Sandbox, assert_exit, text};
use larder_policy::testing::built_policy;

/// Three entries: `often` stored first and read three times, then `b` and `c` stored.
fn fill(sb: &Sandbox) {
    sb.write(&sb.work, "f.txt", "data\n");
    assert_exit(&sb.run(["put", "often", "f.txt"]), 0);
    for _ in 0..3 {
        assert_exit(&sb.run(["get", "often"]), 0);
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    sb.write(&sb.work, "g.txt", "more data\n");
    assert_exit(&sb.run(["put", "b", "g.txt"]), 0);
    std::thread::sleep(std::time::Duration::from_millis(5));
    sb.write(&sb.work, "h.txt", "even more data\n");
    assert_exit(&sb.run(["put", "c", "h.txt"]), 0);
}

#[test]
fn an_lfu_policy_keeps_the_often_used_entry_that_lru_evicts() {
    let Some(lfu) = built_policy("lfu") else {
        return;
    };

    // Native LRU: `often` was used least recently, so it goes.
    let lru = Sandbox::new();
    fill(&lru);
    assert_exit(&lru.run(["trim", "--max-entries", "2"]), 0);
    assert_exit(&lru.run(["get", "often"]), 1);

    // The LFU policy from larder.toml: `b` (no hits, older than `c`) goes instead.
    let sb = Sandbox::new();
    fill(&sb);
    sb.write(
        &sb.work,
        "larder.toml",
        format!("[policy]\neviction = \"{}\"\n", lfu.display()),
    );
    let dry = sb.run(["trim", "--max-entries", "2", "--dry-run"]);
    assert_exit(&dry, 0);
    let err = text(&dry.stderr);
    assert!(
        err.contains("evicting with the policy") && err.contains("lfu.wasm"),
        "{err}"
    );
    let shown = text(&dry.stdout);
    assert!(shown.contains("would evict 1 entry"), "{shown}");
    // It names the entry the policy chose (by storage name), and only that one.
    let name = |k: &str| larder_core::Key::new(k).unwrap().storage_name();
    assert!(shown.contains(&format!("  {}  ", name("b"))), "{shown}");
    assert!(
        !shown.contains(&name("often")) && !shown.contains(&name("c")),
        "{shown}"
    );
    assert_exit(&sb.run(["trim", "--max-entries", "2"]), 0);
    assert_exit(&sb.run(["get", "often"]), 0);
    assert_exit(&sb.run(["get", "b"]), 1);
    assert_exit(&sb.run(["get", "c"]), 0);

    // `larder config` says where the policy came from.
    let cfg = text(&sb.run(["config"]).stdout);
    assert!(
        cfg.contains("eviction_policy") && cfg.contains("lfu.wasm"),
        "{cfg}"
    );
}

#[test]
fn a_broken_policy_file_is_a_warning_and_trims_go_lru() {
    let sb = Sandbox::new();
    fill(&sb);
    sb.write(&sb.work, "bad.wasm", "not wasm");
    let out = sb
        .larder()
        .args(["trim", "--max-entries", "2"])
        .env("LARDER_EVICTION_POLICY", sb.work.join("bad.wasm"))
        .output()
        .expect("running larder trim");
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("LRU order"),
        "{}",
        text(&out.stderr)
    );
    assert_exit(&sb.run(["get", "often"]), 1);
}

/// A sandbox whose larder.toml (in the work directory) has this `[policy]` table.
fn with_policy(table: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(&sb.work, "larder.toml", format!("[policy]\n{table}"));
    sb
}

/// `larder exec` of a step that writes `bytes` bytes to `out.bin` and counts its runs in
/// `counter`.
fn exec_writing(sb: &Sandbox, bytes: usize, counter: &std::path::Path) -> std::process::Output {
    let step = format!(
        "head -c {bytes} /dev/zero > out.bin && echo ran >> {}",
        counter.display()
    );
    sb.run(["-v", "exec", "--out", "out.bin", "--", "sh", "-c", &step])
}

#[test]
fn the_size_cap_admission_policy_keeps_a_large_output_out_of_the_cache() {
    let Some(cap) = built_policy("size-cap") else {
        return;
    };
    let sb = with_policy(&format!(
        "admission = \"{}\"\nadmission_config = \"max-bytes=4096\"\n",
        cap.display()
    ));
    let counter = sb.root.join("runs");

    // 64 KiB: refused, so each run is a miss that runs the step.
    for _ in 0..2 {
        let out = exec_writing(&sb, 65536, &counter);
        assert_exit(&out, 0);
        let err = text(&out.stderr);
        assert!(err.contains("refused by the admission policy"), "{err}");
    }
    assert_eq!(common::count_lines(&counter), 2);
    assert_eq!(sb.stats()["entries"], 0, "{}", sb.stats());

    // 1 KiB: admitted, so the second run is a hit.
    for _ in 0..2 {
        assert_exit(&exec_writing(&sb, 1024, &counter), 0);
    }
    assert_eq!(common::count_lines(&counter), 3);

    // `larder put` is refused too, without an error; `larder get` then misses.
    sb.write(&sb.work, "big.bin", vec![7u8; 65536]);
    let put = sb.run(["-v", "put", "big", "big.bin"]);
    assert_exit(&put, 0);
    assert!(
        text(&put.stderr).contains("refused"),
        "{}",
        text(&put.stderr)
    );
    assert_exit(&sb.run(["get", "big"]), 1);

    // The JSON worker answers that it refused the large put and stores the small one.
    sb.write(&sb.work, "small.bin", "small\n");
    let mut worker = sb
        .larder()
        .arg("worker")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting larder worker");
    {
        use std::io::Write;
        let mut stdin = worker.stdin.take().expect("piped stdin");
        writeln!(stdin, r#"{{"op":"put","key":"w-big","files":["big.bin"]}}"#)
            .expect("writing a request");
        writeln!(
            stdin,
            r#"{{"op":"put","key":"w-small","files":["small.bin"]}}"#
        )
        .expect("writing a request");
    }
    let out = worker.wait_with_output().expect("waiting for the worker");
    assert_exit(&out, 0);
    let answers: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every answer is JSON"))
        .collect();
    assert_eq!(
        (&answers[0]["stored"], &answers[0]["refused"]),
        (&false.into(), &true.into()),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1]["stored"], true, "{}", answers[1]);
    assert_exit(&sb.run(["get", "w-big"]), 1);
    assert_exit(&sb.run(["get", "w-small"]), 0);

    let cfg = text(&sb.run(["config"]).stdout);
    assert!(
        cfg.contains("admission_policy") && cfg.contains("size-cap.wasm"),
        "{cfg}"
    );
}

/// Two checkouts `NAME/proj` of one project, each with `table` in its larder.toml, sharing one
/// cache; the step runs in `proj/sub` and names `proj/include` absolutely, in an argument and
/// in `$INCDIR`. Returns how many times the step ran.
fn two_checkouts(table: &str) -> usize {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    for name in ["one", "two"] {
        let proj = sb.root.join(name).join("proj");
        sb.write(&proj, "larder.toml", format!("[policy]\n{table}"));
        sb.write(&proj, "sub/in.c", "int x;\n");
        let include = proj.join("include");
        let step = format!(
            "cat in.c > out.o && echo \"$1 $INCDIR\" >> out.o && echo ran >> {}",
            counter.display()
        );
        let out = sb
            .larder_in(&proj.join("sub"))
            .args([
                "-v", "exec", "--in", "in.c", "--out", "out.o", "--env", "INCDIR",
            ])
            .args(["--", "sh", "-c", &step, "sh"])
            .arg(format!("-I{}", include.display()))
            .env("INCDIR", &include)
            .output()
            .expect("running larder exec");
        assert_exit(&out, 0);
        assert!(proj.join("sub/out.o").exists());
    }
    common::count_lines(&counter)
}

#[test]
fn the_prefix_normalizer_lets_two_checkouts_share_a_hit() {
    let Some(prefix) = built_policy("prefix") else {
        return;
    };
    // The built-in rule only strips the working directory (`proj/sub`), so `proj/include`
    // keeps the checkouts apart.
    assert_eq!(two_checkouts(""), 2);
    // The prefix normalizer strips the workspace root (larder.toml's directory): one run.
    assert_eq!(
        two_checkouts(&format!("normalize = \"{}\"\n", prefix.display())),
        1
    );
}

#[test]
fn a_failing_normalizer_makes_the_run_uncached() {
    let Some(panic) = built_policy("hostile-normalize-panic") else {
        return;
    };
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    for _ in 0..2 {
        let out = sb
            .larder()
            .args(["-v", "exec", "--out", "out.bin", "--", "sh", "-c"])
            .arg(format!(
                "echo x > out.bin && echo ran >> {}",
                counter.display()
            ))
            .env("LARDER_NORMALIZE_POLICY", &panic)
            .output()
            .expect("running larder exec");
        assert_exit(&out, 0);
        assert!(
            text(&out.stderr).contains("not caching this run"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(common::count_lines(&counter), 2);
    assert_eq!(sb.stats()["entries"], 0);
}

#[test]
fn a_trace_recorded_by_exec_runs_replays_in_the_simulator() {
    let sb = Sandbox::new();
    let trace = sb.root.join("access.trace");
    let counter = sb.root.join("runs");
    // Task a: miss, hit; task b: miss; task a: hit; task b: hit.
    for task in ["a", "a", "b", "a", "b"] {
        let out = sb
            .larder()
            .args(["exec", "--out", "out.txt", "--", "sh", "-c"])
            .arg(format!(
                "echo {task} > out.txt && echo ran >> {}",
                counter.display()
            ))
            .env("LARDER_TRACE", &trace)
            .output()
            .expect("running larder exec");
        assert_exit(&out, 0);
    }
    assert_eq!(common::count_lines(&counter), 2);
    let recorded = std::fs::read_to_string(&trace).expect("the trace was written");
    let ops: Vec<&str> = recorded
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next())
        .collect();
    assert_eq!(
        ops,
        [
            "get-miss", "put", "get-hit", "get-miss", "put", "get-hit", "get-hit"
        ],
        "{recorded}"
    );

    let out = sb.run([
        "policy",
        "simulate",
        "--trace",
        trace.to_str().expect("UTF-8 path"),
        "--capacity",
        "100%",
        "--policy",
        "lru",
        "--json",
    ]);
    assert_exit(&out, 0);
    let results: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("simulate --json prints JSON");
    let lru = &results[0];
    assert_eq!(lru["policy"], "lru", "{results}");
    // Five requests; with room for everything only the two first misses miss.
    assert_eq!(lru["requests"], 5, "{results}");
    assert_eq!(lru["hits"], 3, "{results}");
}

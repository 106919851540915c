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
    assert!(
        text(&dry.stdout).contains("would evict 1 entry"),
        "{}",
        text(&dry.stdout)
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

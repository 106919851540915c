//! `larder stats`, `larder trim` and `larder config`: counters, LRU eviction, and where each
//! setting comes from (larder.toml < WAFCACHE_* < LARDER_* < flags).

mod common;

use std::time::Duration;

use common::{Sandbox, assert_exit, text};

/// A cacheable task with one output, used by several tests here.
const ECHO_EXEC: [&str; 7] = [
    "exec",
    "--out",
    "o.txt",
    "--",
    "sh",
    "-c",
    "echo hi > o.txt",
];

#[test]
fn stats_count_hits_and_misses() {
    let sb = Sandbox::new();
    let exec = ECHO_EXEC;
    assert_exit(&sb.run(exec), 0); // miss, stored
    assert_exit(&sb.run(exec), 0); // hit
    assert_exit(&sb.run(exec), 0); // hit
    assert_exit(&sb.run(["get", "nothing-here"]), 1); // miss
    let s = sb.stats();
    assert_eq!(s["entries"], 1, "{s}");
    assert_eq!(s["hits"], 2, "{s}");
    assert_eq!(s["misses"], 2, "{s}");
    assert_eq!(s["hit_ratio"], 0.5, "{s}");
    assert!(s["bytes"].as_u64().is_some_and(|b| b > 0), "{s}");

    let table = sb.run(["stats"]);
    assert_exit(&table, 0);
    let t = text(&table.stdout);
    assert!(t.contains("hit ratio") && t.contains("50.0 %"), "{t}");

    // WAFCACHE_STATS prints statistics when exec ends.
    let o = sb
        .larder()
        .env("WAFCACHE_STATS", "1")
        .args(exec)
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    assert!(
        text(&o.stderr).contains("larder: stats: 1 entry"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn trim_evicts_least_recently_used() {
    let sb = Sandbox::new();
    for k in ["k1", "k2", "k3"] {
        sb.write(&sb.work, &format!("{k}.txt"), k.repeat(1000));
        assert_exit(&sb.run(["put", k, &format!("{k}.txt")]), 0);
        std::thread::sleep(Duration::from_millis(30));
    }
    // Touch k1: k2 is now the least recently used.
    assert_exit(&sb.run(["get", "k1"]), 0);
    std::thread::sleep(Duration::from_millis(30));

    let o = sb.run(["trim"]);
    assert_exit(&o, 2);
    assert!(text(&o.stderr).contains("no budget"), "{}", text(&o.stderr));

    let o = sb.run(["trim", "--max-entries", "2", "--dry-run"]);
    assert_exit(&o, 0);
    assert!(
        text(&o.stdout).contains("would evict 1 entry"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(sb.stats()["entries"], 3);

    let o = sb.run(["trim", "--max-entries", "2"]);
    assert_exit(&o, 0);
    assert!(
        text(&o.stdout).starts_with("evicted 1 entry"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(sb.stats()["entries"], 2);
    assert_exit(&sb.run(["get", "k2"]), 1);
    assert_exit(&sb.run(["get", "k1"]), 0);
    assert_exit(&sb.run(["get", "k3"]), 0);

    // A configured budget is used when no flag is given, and exec trims after storing.
    let o = sb
        .larder()
        .env("LARDER_MAX_ENTRIES", "1")
        .arg("trim")
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    assert_eq!(sb.stats()["entries"], 1);
    let o = sb
        .larder()
        .env("WAFCACHE_TRIM_MAX_FOLDER", "1")
        .args([
            "exec",
            "--out",
            "n.txt",
            "--",
            "sh",
            "-c",
            "echo new > n.txt",
        ])
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    assert_eq!(sb.stats()["entries"], 1);
}

#[test]
fn config_layers_and_sources() {
    let sb = Sandbox::new();
    let toml = sb.write(
        &sb.work,
        "larder.toml",
        "store = \"from-toml\"\nmax_size = \"1G\"\nmax_entries = 10\nlink = \"hardlink\"\ncompression = 19\n",
    );
    let sub = sb.work.join("deep/er");
    std::fs::create_dir_all(&sub).expect("creating subdir");
    let config = |envs: &[(&str, &str)], flags: &[&str]| {
        let mut cmd = sb.larder_in(&sub);
        cmd.env_remove("LARDER_STORE");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let o = cmd
            .args(flags)
            .args(["config", "--json"])
            .output()
            .expect("larder");
        assert_exit(&o, 0);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON")
    };
    let file_source = format!("file {}", toml.display());

    // larder.toml, found from a subdirectory; a relative store is relative to the file.
    let c = config(&[], &[]);
    assert_eq!(c["config_file"], toml.display().to_string());
    let s = &c["settings"];
    assert_eq!(
        s["store"]["value"],
        sb.work.join("from-toml").display().to_string()
    );
    assert_eq!(s["store"]["source"], file_source);
    assert_eq!(s["max_size"]["value"], 1u64 << 30);
    assert_eq!(s["link"]["value"], "hardlink");
    assert_eq!(s["compression"]["value"], 19);
    assert_eq!(s["no_push"]["source"], "default");

    // wafcache variables override larder.toml ...
    let waf = [
        ("WAFCACHE", "/from/wafcache"),
        ("WAFCACHE_EVICT_MAX_BYTES", "2000"),
        ("WAFCACHE_TRIM_MAX_FOLDER", "5"),
        ("WAFCACHE_NO_PUSH", "1"),
    ];
    let s = &config(&waf, &[])["settings"];
    assert_eq!(s["store"]["value"], "/from/wafcache");
    assert_eq!(s["store"]["source"], "env WAFCACHE");
    assert_eq!(s["max_size"]["value"], 2000);
    assert_eq!(s["max_size"]["source"], "env WAFCACHE_EVICT_MAX_BYTES");
    assert_eq!(s["max_entries"]["value"], 5);
    assert_eq!(s["no_push"]["value"], true);
    assert_eq!(s["no_push"]["source"], "env WAFCACHE_NO_PUSH");
    assert_eq!(s["link"]["source"], file_source);

    // ... LARDER_* variables override them ...
    let mut both = waf.to_vec();
    both.extend([
        ("LARDER_STORE", "/from/larder"),
        ("LARDER_MAX_ENTRIES", "7"),
        ("LARDER_NO_PUSH", "false"),
    ]);
    let s = &config(&both, &[])["settings"];
    assert_eq!(s["store"]["value"], "/from/larder");
    assert_eq!(s["store"]["source"], "env LARDER_STORE");
    assert_eq!(s["max_entries"]["value"], 7);
    assert_eq!(s["max_size"]["value"], 2000);
    assert_eq!(s["no_push"]["value"], false);

    // ... and flags override everything.
    let s = &config(&both, &["--store", "/from/flag"])["settings"];
    assert_eq!(s["store"]["value"], "/from/flag");
    assert_eq!(s["store"]["source"], "flag --store");

    // LARDER_CONFIG picks another file.
    let other = sb.write(&sb.root, "other.toml", "max_entries = 3\n");
    let c = config(&[("LARDER_CONFIG", other.to_str().expect("UTF-8"))], &[]);
    assert_eq!(c["settings"]["max_entries"]["value"], 3);
    assert_eq!(c["settings"]["max_size"]["value"], serde_json::Value::Null);

    // The human-readable form shows sources too.
    let o = sb
        .larder_in(&sub)
        .env("LARDER_MAX_SIZE", "3G")
        .arg("config")
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    let t = text(&o.stdout);
    assert!(
        t.lines().any(|l| l.starts_with("max_size")
            && l.contains("3.0 GiB")
            && l.contains("env LARDER_MAX_SIZE")),
        "{t}"
    );
}

#[test]
fn no_push_makes_exec_read_only() {
    let sb = Sandbox::new();
    let exec = ECHO_EXEC;
    let o = sb
        .larder()
        .env("WAFCACHE_NO_PUSH", "1")
        .args(exec)
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    assert_eq!(sb.stats()["entries"], 0);
    let o = sb.run([
        "exec",
        "--no-push",
        "--out",
        "o.txt",
        "--",
        "sh",
        "-c",
        "echo hi > o.txt",
    ]);
    assert_exit(&o, 0);
    assert_eq!(sb.stats()["entries"], 0);
    // Stored normally, then a read-only run still hits.
    assert_exit(&sb.run(exec), 0);
    let o = sb
        .larder()
        .env("LARDER_NO_PUSH", "1")
        .arg("-v")
        .args(exec)
        .output()
        .expect("larder");
    assert_exit(&o, 0);
    assert!(
        text(&o.stderr).contains("larder: hit "),
        "{}",
        text(&o.stderr)
    );
}

/// The stored blob files under `cache`, largest first.
fn blob_files(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(cache.join("blobs"))
        .expect("blobs/")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("fan-out dir").flatten())
        .map(|f| (f.metadata().expect("stat").len(), f.path()))
        .collect();
    files.sort();
    files.into_iter().rev().map(|(_, p)| p).collect()
}

#[test]
fn verify_removes_damaged_blobs_and_their_entries_miss() {
    let sb = Sandbox::new();
    // Incompressible, over the inline limit: stored as raw blobs.
    let mut big = vec![0u8; 300_000];
    let mut x: u32 = 12345;
    for b in &mut big {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 24) as u8;
    }
    sb.write(&sb.work, "big.bin", &big);
    sb.write(&sb.work, "other.bin", &big[..100_000]);
    assert_exit(&sb.run(["put", "k1", "big.bin"]), 0);
    assert_exit(&sb.run(["put", "k2", "other.bin"]), 0);

    let o = sb.run(["verify"]);
    assert_exit(&o, 0);
    assert!(
        text(&o.stdout).contains("verified 2 blobs")
            && text(&o.stdout).contains("2 good, 0 damaged"),
        "{}",
        text(&o.stdout)
    );

    // Damage the larger blob on disk (one byte, same length).
    let damaged = blob_files(&sb.cache)[0].clone();
    let mut perms = std::fs::metadata(&damaged).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&damaged, perms).expect("chmod");
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[150_000] ^= 1;
    std::fs::write(&damaged, bytes).expect("write");

    let dir = sb.cache.display().to_string();
    let o = sb.run(["verify", "--dir", &dir, "--rate", "100MiB/s", "--json"]);
    assert_exit(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let name = damaged
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(v["damaged"], serde_json::json!([name]), "{v}");
    assert_eq!(v["good"], 1, "{v}");
    assert!(!damaged.exists(), "the damaged blob is removed");
    // Its entry now misses; the other still hits.
    assert_exit(&sb.run(["get", "k1"]), 1);
    assert_exit(&sb.run(["get", "k2"]), 0);

    let o = sb.run(["verify"]);
    assert_exit(&o, 0);
    assert!(
        text(&o.stdout).contains("1 good, 0 damaged"),
        "{}",
        text(&o.stdout)
    );
    let o = sb.run(["verify", "--rate", "fast"]);
    assert_exit(&o, 2);
    assert!(text(&o.stderr).contains("--rate"), "{}", text(&o.stderr));
}

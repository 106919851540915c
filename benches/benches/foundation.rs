//! The foundation benchmarks (issue 2), each a ratio to a baseline measured in the same run:
//!
//! - signature of a 1 GiB input tree (1024 × 1 MiB), cold (no stat cache) and unchanged (stat
//!   cache warm), against plain BLAKE3 hashing of the same bytes;
//! - fs put and get of 10,000 × 1 KiB outputs and of 20 × 100 MiB outputs, against `cp` of the
//!   same files;
//! - trimming 10% of a 100,000-entry cache, and the put rate right after it (ext4 slows file
//!   creation for minutes after mass deletion; see shared/BASELINES.md).
//!
//! `cargo bench -p larder-benches --bench foundation [-- --quick] [--only signatures,small,large,trim] [--out DIR]`
//! (`--out`: also `DIR/foundation.result.json`, the rows BENCHMARKS.md shows). Under `cargo test` it runs a
//! tiny smoke version. The page cache is warm throughout (for larder and for the baselines), as it
//! is for a build that just wrote its outputs; dirty pages are flushed (`sync`) before every timed
//! phase, each phase's input files are read once just before it (this VM pages out idle memory
//! within seconds), and the `cp` baseline runs first in even repetitions and last in odd ones.
//! For 100 MiB outputs a second get row interleaves the two per file (each output restored by
//! larder and copied by the kernel one right after the other, the order alternating), so slow
//! drifts of this VM's writeback hit both sides alike. Results go to stdout (Markdown) and to
//! `target/bench/foundation.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_benches::{
    Row, fmt_d, median, peak_rss, print_table, samples, spread, write_pseudo_random_file,
};
use larder_client::{Cache, Declared, Lookup, Restore, Streams};
use larder_core::normalize::BaseDirs;
use larder_core::signature::{InputHasher, SignatureBuilder};
use larder_core::statcache::StatCache;
use larder_core::{Entry, Key, Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};
use rayon::prelude::*;

struct Plan {
    reps: usize,
    tree_files: usize,
    tree_file_bytes: u64,
    small_entries: usize,
    large_entries: usize,
    large_bytes: u64,
    trim_entries: usize,
}

fn plan() -> (Plan, &'static str) {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    if !benching {
        // `cargo test` runs bench targets as tests: a smoke run that checks the code works.
        return (
            Plan {
                reps: 1,
                tree_files: 8,
                tree_file_bytes: 1 << 20,
                small_entries: 200,
                large_entries: 2,
                large_bytes: 4 << 20,
                trim_entries: 1000,
            },
            "smoke",
        );
    }
    if quick {
        return (
            Plan {
                reps: 3,
                tree_files: 128,
                tree_file_bytes: 1 << 20,
                small_entries: 2000,
                large_entries: 4,
                large_bytes: 32 << 20,
                trim_entries: 20_000,
            },
            "quick",
        );
    }
    (
        Plan {
            reps: 5,
            tree_files: 1024,
            tree_file_bytes: 1 << 20,
            small_entries: 10_000,
            large_entries: 20,
            large_bytes: 100 << 20,
            trim_entries: 100_000,
        },
        "full",
    )
}

fn work_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-work")
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir.to_path_buf()
}

fn run_cp(args: &[&Path], dest: &Path) {
    let mut c = Command::new("cp");
    c.arg("-r");
    for a in args {
        c.arg(a);
    }
    c.arg(dest);
    let st = c.status().unwrap_or_else(|e| panic!("running cp: {e}"));
    assert!(st.success(), "cp failed");
}

/// Flush dirty pages before a timed phase, so writeback left by the previous phase does not land
/// on the next one (whichever of larder or its baseline runs second would pay for the first).
fn settle() {
    let _ = Command::new("sync").status();
}

/// Read every file below `dir` once, so a phase starts with its inputs in the page cache.
///
/// This VM runs DAMON proactive reclaim (`pageout` of pages idle for a few seconds), so data
/// written by one phase may be gone from memory when the next reads it: reading the inputs just
/// before each phase gives larder and `cp` the same warm start.
fn warm(dir: &Path) {
    use std::io::Read;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut buf = vec![0u8; 1 << 20];
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            warm(&p);
        } else if let Ok(mut f) = std::fs::File::open(&p) {
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

fn main() {
    let (p, mode) = plan();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let root = fresh(&work_dir());
    println!(
        "larder foundation benchmarks ({mode}); work dir {}",
        root.display()
    );
    let mut md = String::new();
    let mut json = Vec::new();
    // `-- --only signatures,small,large,trim` runs a subset.
    let args: Vec<String> = std::env::args().collect();
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));

    if wanted("signatures") {
        // --- Signatures -------------------------------------------------------------------------
        let tree = fresh(&root.join("tree"));
        let files: Vec<PathBuf> = (0..p.tree_files)
            .map(|i| tree.join(format!("d{}/f{i}.bin", i % 16)))
            .collect();
        files.par_iter().enumerate().for_each(|(i, f)| {
            let _ = std::fs::create_dir_all(f.parent().unwrap_or(Path::new(".")));
            write_pseudo_random_file(f, &format!("tree{i}"), p.tree_file_bytes)
                .unwrap_or_else(|e| panic!("{e}"));
        });
        // Files hashed within 2 s of their last change are not trusted by the stat cache (racy).
        std::thread::sleep(Duration::from_millis(2100));
        let tree_bytes = p.tree_files as u64 * p.tree_file_bytes;
        let norm = BaseDirs::new([tree.to_string_lossy().as_ref()]);
        let sign = |hasher: &InputHasher| {
            let digests = hasher.hash_files(&files).unwrap_or_else(|e| panic!("{e}"));
            let mut b = SignatureBuilder::new("bench", &norm);
            for (f, d) in files.iter().zip(&digests) {
                b.input(&f.to_string_lossy(), d)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            b.finish()
        };
        let plain = samples(p.reps, || {
            let _: Vec<blake3::Hash> = files
                .par_iter()
                .map(|f| {
                    let mut h = blake3::Hasher::new();
                    h.update_mmap_rayon(f).unwrap_or_else(|e| panic!("{e}"));
                    h.finalize()
                })
                .collect();
        });
        let cold = samples(p.reps, || {
            sign(&InputHasher::new(StatCache::in_memory()));
        });
        let cache_path = root.join("statcache.bin");
        {
            let h = InputHasher::new(StatCache::load(&cache_path));
            sign(&h);
            h.cache().save().unwrap_or_else(|e| panic!("{e}"));
        }
        let warm = samples(p.reps.max(5), || {
            // Loading the cache file is part of every real run.
            let h = InputHasher::new(StatCache::load(&cache_path));
            sign(&h);
        });
        let sig_rows = vec![
            Row {
                what: format!(
                    "sign {} MiB tree ({} files), no stat cache",
                    tree_bytes >> 20,
                    p.tree_files
                ),
                larder: median(&cold),
                baseline: Some(median(&plain)),
                baseline_name: "plain BLAKE3 of the same files (mmap, 2 threads)".into(),
                units: Some((tree_bytes as f64, "B")),
                spread: spread(&cold),
                note: String::new(),
            },
            Row {
                what: "re-sign the unchanged tree (stat cache)".into(),
                larder: median(&warm),
                baseline: Some(median(&cold)),
                baseline_name: "signing it with no stat cache".into(),
                units: None,
                spread: spread(&warm),
                note: format!(
                    "{:.0}× faster than hashing cold",
                    median(&cold).as_secs_f64() / median(&warm).as_secs_f64()
                ),
            },
        ];
        md += &print_table("Signatures", &sig_rows);
        json.push(("signatures", sig_rows));
        let _ = std::fs::remove_dir_all(&tree);
    }

    // --- fs put/get -------------------------------------------------------------------------
    if wanted("small") {
        let small_rows = rt.block_on(put_get(&root, "small", p.small_entries, 1024, p.reps));
        md += &print_table(
            &format!(
                "fs store: {} × 1 KiB outputs, one entry each",
                p.small_entries
            ),
            &small_rows,
        );
        json.push(("small", small_rows));
    }

    if wanted("large") {
        let large_rows = rt.block_on(put_get(
            &root,
            "large",
            p.large_entries,
            p.large_bytes,
            p.reps.min(3),
        ));
        md += &print_table(
            &format!(
                "fs store: {} × {} MiB outputs, one entry each",
                p.large_entries,
                p.large_bytes >> 20
            ),
            &large_rows,
        );
        json.push(("large", large_rows));
    }

    let rss = peak_rss();
    let rss_line = format!(
        "\nPeak resident memory of the whole benchmark process: {} MiB (largest single output: {} MiB).\n",
        rss >> 20,
        p.large_bytes >> 20
    );
    println!("{rss_line}");
    md += &rss_line;

    // --- Trim -------------------------------------------------------------------------------
    if wanted("trim") {
        let trim_rows = rt.block_on(trim(&root, p.trim_entries));
        md += &print_table(
            &format!("Trim 10% of a {}-entry cache", p.trim_entries),
            &trim_rows,
        );
        json.push(("trim", trim_rows));
    }

    let out_dir = root.parent().unwrap_or(&root).join("bench");
    let _ = std::fs::create_dir_all(&out_dir);
    let json_val = serde_json::json!({
        "mode": mode,
        "host": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "git": Command::new("git").args(["rev-parse", "HEAD"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        "peak_rss_bytes": rss,
        "tables": json.iter().map(|(name, rows)| serde_json::json!({
            "name": name,
            "rows": rows.iter().map(|r| serde_json::json!({
                "what": r.what, "larder_s": r.larder.as_secs_f64(),
                "baseline": r.baseline_name, "baseline_s": r.baseline.map(|b| b.as_secs_f64()),
                "min_s": r.spread.0.as_secs_f64(), "max_s": r.spread.1.as_secs_f64(), "note": r.note,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let _ = std::fs::write(
        out_dir.join(format!("foundation-{mode}.json")),
        serde_json::to_string_pretty(&json_val).unwrap_or_default(),
    );
    let _ = std::fs::write(out_dir.join(format!("foundation-{mode}.md")), &md);
    // `-- --out DIR`: also the rows of BENCHMARKS.md (`cargo xtask bench`), into DIR.
    let result_dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or(out_dir);
    let _ = std::fs::create_dir_all(&result_dir);
    let _ = std::fs::write(
        result_dir.join("foundation.result.json"),
        serde_json::to_string_pretty(&result_rows(&json, rss, &p)).unwrap_or_default(),
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The rows of BENCHMARKS.md's foundation table (the schema in xtask/src/bench_report.rs):
/// every measured row against its baseline; restoring large outputs has a target of 0.9× `cp`'s
/// speed.
fn result_rows(tables: &[(&str, Vec<Row>)], rss: u64, p: &Plan) -> serde_json::Value {
    let mut rows = Vec::new();
    for (table, trs) in tables {
        for r in trs {
            let ratio = r.speed_ratio();
            let larder = match r.rate() {
                Some(rate) => format!("{} ({rate})", larder_benches::fmt_d(r.larder)),
                None => larder_benches::fmt_d(r.larder),
            };
            let baseline = match r.baseline {
                Some(b) => format!("{}, {}", r.baseline_name, larder_benches::fmt_d(b)),
                None => r.baseline_name.clone(),
            };
            let targeted = *table == "large" && r.what.starts_with("get");
            rows.push(serde_json::json!({
                "what": r.what, "larder": larder, "baseline": baseline, "ratio": ratio,
                "target": if targeted { "≥ 0.9×" } else { "" },
                "met": if targeted { ratio.map(|x| x >= 0.9) } else { None },
                "headline": targeted && !r.what.contains("interleaved")
                    || r.what.starts_with("re-sign"),
            }));
        }
    }
    rows.push(serde_json::json!({
        "what": format!("peak RSS of the bench process ({} MiB outputs streamed)", p.large_bytes >> 20),
        "larder": format!("{} MiB", rss >> 20), "baseline": "", "ratio": null, "target": "",
        "met": null,
    }));
    serde_json::json!({
        "area": "foundation",
        "settings": format!(
            "medians of {} runs ({} for the large outputs); {} × 1 KiB and {} × {} MiB entries; a {} MiB tree to sign",
            p.reps, p.reps.min(3), p.small_entries, p.large_entries, p.large_bytes >> 20,
            (p.tree_files as u64 * p.tree_file_bytes) >> 20
        ),
        "rows": rows,
    })
}

fn open_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        FsStore::open(dir, FsConfig::default())
            .unwrap_or_else(|e| panic!("opening the fs store: {e}")),
    )
}

/// Put `n` outputs of `size` bytes (one entry each) into a fresh store, then get them all back;
/// compare with `cp -r` of the same files.
async fn put_get(root: &Path, name: &str, n: usize, size: u64, reps: usize) -> Vec<Row> {
    let src = fresh(&root.join(format!("{name}-src")));
    let names: Vec<String> = (0..n).map(|i| format!("o{i}.bin")).collect();
    {
        let src = src.clone();
        let names = names.clone();
        tokio::task::spawn_blocking(move || {
            names.par_iter().enumerate().for_each(|(i, f)| {
                write_pseudo_random_file(&src.join(f), &format!("{i}"), size)
                    .unwrap_or_else(|e| panic!("{e}"));
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let (mut put_s, mut get_s, mut cp_s) = (Vec::new(), Vec::new(), Vec::new());
    // The interleaved comparison (large outputs only): larder's restores and the kernel copies.
    let (mut mixed_get_s, mut mixed_copy_s) = (Vec::new(), Vec::new());
    let mut dirs = Vec::new();
    for rep in 0..reps {
        let cache = fresh(&root.join(format!("{name}-cache-{rep}")));
        let dest = fresh(&root.join(format!("{name}-dest-{rep}")));
        // Baseline: one `cp -r` of the same files into an empty directory. It runs first in
        // even repetitions and last in odd ones, so neither side always meets the page cache
        // (and the writeback) the other left.
        let cp_dest = fresh(&root.join(format!("{name}-cp-{rep}")));
        let baseline = || {
            settle();
            warm(&src);
            let t = Instant::now();
            run_cp(&[&src], &cp_dest);
            t.elapsed()
        };
        let cp_first = rep % 2 == 0;
        if cp_first {
            cp_s.push(baseline());
        }
        let store = open_store(&cache);
        let keys: Vec<Key> = (0..n)
            .map(|i| Key::new(format!("bench-{rep}-{i}")).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        settle();
        warm(&src);
        let t = Instant::now();
        let client = Cache::new(Arc::clone(&store));
        for (k, f) in keys.iter().zip(&names) {
            let prepared = client
                .collect(&src, k, std::slice::from_ref(f), "bench")
                .unwrap_or_else(|e| panic!("{e}"));
            client
                .put(k, prepared, Streams::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        put_s.push(t.elapsed());
        // The interleaved comparison runs right after the put, before the back-to-back get
        // adds its 2 GB of writes.
        if size >= 1 << 20 {
            let (larder_t, copy_t) =
                interleaved(&client, &keys, &names, &src, root, name, rep).await;
            mixed_get_s.push(larder_t);
            mixed_copy_s.push(copy_t);
        }
        settle();
        warm(&cache);
        let t = Instant::now();
        for k in &keys {
            restore_one(&client, k, &dest).await;
        }
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        get_s.push(t.elapsed());
        drop(store);
        if !cp_first {
            cp_s.push(baseline());
        }
        if n >= 1000 {
            // Many small files: clean up only after the last repetition, because ext4 slows
            // file creation for minutes after mass deletion (shared/BASELINES.md), which would
            // land on whichever repetition ran next.
            dirs.extend([cp_dest, dest, cache]);
        } else {
            // Few large files: clean up now, or repetitions fill the page cache (each holds 4
            // copies of the data) and later ones read from disk while the first did not.
            for d in [cp_dest, dest, cache] {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_dir_all(&src);
    let units = if size >= 1 << 20 {
        (n as f64 * size as f64, "B")
    } else {
        (n as f64, "entries")
    };
    let mut rows = vec![
        Row {
            what: format!("put {n} × {}", larder_core::size::format_size(size)),
            larder: median(&put_s),
            baseline: Some(median(&cp_s)),
            baseline_name: "cp -r of the same files".into(),
            units: Some(units),
            spread: spread(&put_s),
            note: "hash + store + index".into(),
        },
        Row {
            what: format!("get {n} × {}", larder_core::size::format_size(size)),
            larder: median(&get_s),
            baseline: Some(median(&cp_s)),
            baseline_name: "cp -r of the same files".into(),
            units: Some(units),
            spread: spread(&get_s),
            note: "lookup + verify + restore".into(),
        },
    ];
    if !mixed_get_s.is_empty() {
        rows.push(Row {
            what: format!(
                "get {n} × {}, interleaved",
                larder_core::size::format_size(size)
            ),
            larder: median(&mixed_get_s),
            baseline: Some(median(&mixed_copy_s)),
            baseline_name: "kernel copy of each file, alternating with each restore".into(),
            units: Some(units),
            spread: spread(&mixed_get_s),
            note: "lookup + verify + restore; copy = copy_file_range, as cp".into(),
        });
    }
    rows
}

/// Look `k` up and restore its outputs under `dest` through the client library, as `larder
/// get` does (what a get phase times per key).
async fn restore_one(client: &Cache<'_>, k: &Key, dest: &Path) {
    let Lookup::Found(e) = client
        .lookup(k, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!("{k}: a miss right after the put")
    };
    let r = client
        .restore(k, &e, dest, Declared::Entry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r, Restore::Restored);
}

/// Restore every output of `keys`, each one right next to a kernel copy of its source
/// (`std::fs::copy`: `copy_file_range`, what `cp` does, without a process start), the order
/// alternating per file. Returns the restores' and the copies' total times.
async fn interleaved(
    client: &Cache<'_>,
    keys: &[Key],
    names: &[String],
    src: &Path,
    root: &Path,
    name: &str,
    rep: usize,
) -> (Duration, Duration) {
    let dest = fresh(&root.join(format!("{name}-mixed-dest-{rep}")));
    let copies = fresh(&root.join(format!("{name}-mixed-copy-{rep}")));
    settle();
    let (mut restore_t, mut copy_t) = (Duration::ZERO, Duration::ZERO);
    for (i, (k, f)) in keys.iter().zip(names).enumerate() {
        let copy = || {
            let t = Instant::now();
            std::fs::copy(src.join(f), copies.join(f)).unwrap_or_else(|e| panic!("{e}"));
            t.elapsed()
        };
        if i % 2 == 0 {
            copy_t += copy();
        }
        let t = Instant::now();
        restore_one(client, k, &dest).await;
        restore_t += t.elapsed();
        if i % 2 == 1 {
            copy_t += copy();
        }
    }
    for d in [dest, copies] {
        let _ = std::fs::remove_dir_all(d);
    }
    (restore_t, copy_t)
}

/// An entry with one 1 KiB output, inlined (what a small compile task stores).
fn one_kib_entry(k: &Key, fill: u8) -> Entry {
    let mut e = Entry::new(k.as_str(), "bench");
    e.outputs.push(larder_core::Output {
        path: "o".into(),
        kind: larder_core::OutputKind::File {
            content: larder_core::Content::inline(vec![fill; 1024]),
            executable: false,
        },
    });
    e
}

/// Fill a store with `n` small entries, trim 10% of them, then measure puts right after.
async fn trim(root: &Path, n: usize) -> Vec<Row> {
    let cache = fresh(&root.join("trim-cache"));
    let store = open_store(&cache);
    let fill = Instant::now();
    for i in 0..n {
        let k = Key::new(format!("trim-{i}")).unwrap_or_else(|e| panic!("{e}"));
        store
            .put_entry(&k, &one_kib_entry(&k, (i % 251) as u8))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let fill_time = fill.elapsed();
    let mut opts = TrimOptions::default();
    opts.max_entries = Some((n - n / 10) as u64);
    let t = Instant::now();
    let report = store
        .trim(&opts, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let trim_time = t.elapsed();
    assert_eq!(
        report.evicted_entries,
        (n / 10) as u64,
        "trim evicted {report:?}"
    );
    // Puts right after a mass deletion (ext4's slow-create window).
    let after_n = (n / 10).min(10_000);
    let t = Instant::now();
    for i in 0..after_n {
        let k = Key::new(format!("after-{i}")).unwrap_or_else(|e| panic!("{e}"));
        store
            .put_entry(&k, &one_kib_entry(&k, 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let after = t.elapsed();
    let fill_rate = n as f64 / fill_time.as_secs_f64();
    let after_rate = after_n as f64 / after.as_secs_f64();
    let _ = std::fs::remove_dir_all(&cache);
    vec![
        Row {
            what: format!("trim {} of {n} entries", n / 10),
            larder: trim_time,
            baseline: None,
            baseline_name: "wafcache lru_trim: minutes (BASELINES.md)".into(),
            units: Some(((n / 10) as f64, "entries")),
            spread: (trim_time, trim_time),
            note: "target < 2 s; one run".to_string(),
        },
        Row {
            what: format!("{after_n} puts right after the trim"),
            larder: after,
            baseline: Some(Duration::from_secs_f64(after_n as f64 / fill_rate)),
            baseline_name: format!("same puts at the fill rate ({fill_rate:.0}/s)"),
            units: Some((after_n as f64, "entries")),
            spread: (after, after),
            note: format!(
                "{after_rate:.0}/s after vs {fill_rate:.0}/s before; fill took {}",
                fmt_d(fill_time)
            ),
        },
    ]
}

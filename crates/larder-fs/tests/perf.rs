//! Ad-hoc performance figures (ignored by default; the real benches live in `benches/`):
//!
//! ```text
//! cargo test --release -p larder-fs --test perf -- --ignored --nocapture --test-threads 1
//! ```

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use larder_core::{Digest, Placement, Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement"]
async fn put_get_1k_entries_per_second() {
    let (_dir, store) = temp_store(FsConfig::default());
    let store = Arc::new(store);
    let n = 20_000;
    let keys: Vec<_> = (0..n).map(|i| key(&format!("perf/{i}"))).collect();
    let entries: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| inline_entry(k, &random_bytes(&format!("v{i}"), 1024)))
        .collect();
    let t = Instant::now();
    for (k, e) in keys.iter().zip(&entries) {
        store.put_entry(k, e).await.unwrap();
    }
    let first = t.elapsed();
    // Again, over the same keys (overwrites).
    let t = Instant::now();
    for (k, e) in keys.iter().zip(&entries) {
        store.put_entry(k, e).await.unwrap();
    }
    let put = t.elapsed();
    eprintln!(
        "perf: 1 KiB entries, one task: first put {:.0}/s (new names)",
        n as f64 / first.as_secs_f64()
    );
    let t = Instant::now();
    for k in &keys {
        assert!(store.get_entry(k).await.unwrap().is_some());
    }
    let get = t.elapsed();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    eprintln!(
        "perf: 1 KiB entries, one task: put {:.0}/s (overwrites), get {:.0}/s",
        rate(put),
        rate(get)
    );
    // Two tasks (two cores), fresh keys.
    let keys = Arc::new(
        (0..n)
            .map(|i| key(&format!("perf2/{i}")))
            .collect::<Vec<_>>(),
    );
    let entries = Arc::new(entries);
    for phase in ["put", "get"] {
        let t = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|w| {
                let (s, k, e) = (Arc::clone(&store), Arc::clone(&keys), Arc::clone(&entries));
                tokio::spawn(async move {
                    for i in (w..n).step_by(2) {
                        if phase == "put" {
                            s.put_entry(&k[i], &e[i]).await.unwrap();
                        } else {
                            assert!(s.get_entry(&k[i]).await.unwrap().is_some());
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!(
            "perf: 1 KiB entries, two tasks: {phase} {:.0}/s",
            rate(t.elapsed())
        );
    }
    store.flush().await.unwrap();
    assert_eq!(store.stats().await.unwrap().entries, 2 * n as u64);
}

fn cp(src: &Path, dest: &Path) -> Duration {
    let _ = std::fs::remove_file(dest);
    let t = Instant::now();
    let ok = std::process::Command::new("cp")
        .arg(src)
        .arg(dest)
        .status()
        .unwrap()
        .success();
    let d = t.elapsed();
    assert!(ok);
    d
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement"]
async fn place_100_mib_vs_cp() {
    // Under target/ rather than /tmp: the same file system as a build tree.
    let base =
        std::env::var("LARDER_PERF_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = FsStore::open(dir.path().join("cache"), FsConfig::default()).unwrap();
    let bytes = random_bytes("place", 100 << 20);
    let src = dir.path().join("output.bin");
    std::fs::write(&src, &bytes).unwrap();
    let d = Digest::of(&bytes);
    let len = bytes.len() as u64;
    drop(bytes);
    let mut puts = Vec::new();
    for i in 0..5 {
        if i > 0 {
            let b = blob_file(store.root(), &d).unwrap();
            std::fs::remove_file(b).unwrap();
        }
        let t = Instant::now();
        let stream = larder_core::artifacts::file_stream(&src).await.unwrap();
        store.put_blob(&d, len, stream).await.unwrap();
        puts.push(t.elapsed());
    }
    let mut cps = Vec::new();
    for _ in 0..5 {
        cps.push(cp(&src, &dir.path().join("cp.bin")));
    }
    eprintln!(
        "perf: put_blob of 100 MiB from a file stream: {:.2?} (cp {:.2?})",
        median(puts),
        median(cps)
    );
    let blob = blob_file(store.root(), &d).unwrap();
    let dest = dir.path().join("restored.bin");
    let (mut ours, mut theirs, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        theirs.push(cp(&blob, &dest));
        let _ = std::fs::remove_file(&dest);
        let t = Instant::now();
        assert!(store.place_blob(&d, &dest, Placement::Copy).await.unwrap());
        ours.push(t.elapsed());
        let _ = std::fs::remove_file(&dest);
        let t = Instant::now();
        assert!(
            store
                .place_blob(&d, &dest, Placement::Hardlink)
                .await
                .unwrap()
        );
        links.push(t.elapsed());
        let _ = std::fs::remove_file(&dest);
    }
    let (ours, theirs, links) = (median(ours), median(theirs), median(links));
    eprintln!(
        "perf: place 100 MiB (copy, verified) {ours:.2?} vs cp {theirs:.2?}: {:.2}x cp's speed; hard link (verified) {links:.2?}",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement"]
async fn trim_10k_of_100k() {
    let (_dir, store) = temp_store(FsConfig::default());
    let n = 100_000;
    let t = Instant::now();
    let body = random_bytes("trim", 512);
    for i in 0..n {
        let k = key(&format!("trim/{i}"));
        store.put_entry(&k, &inline_entry(&k, &body)).await.unwrap();
    }
    store.flush().await.unwrap();
    eprintln!("perf: filled {n} entries in {:.2?}", t.elapsed());
    let mut o = TrimOptions::default();
    o.max_entries = Some(n - n / 10);
    let t = Instant::now();
    let r = store.trim(&o, None).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.evicted_entries, n / 10);
    eprintln!(
        "perf: trim of {} of {n} entries took {took:.2?}",
        r.evicted_entries
    );
    // What every short-lived process pays: opening a large cache (and closing it).
    let root = store.root().to_path_buf();
    drop(store);
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = FsStore::open(&root, FsConfig::default()).unwrap();
        s.get_entry(&key("trim/99999")).await.unwrap();
        drop(s);
        opens.push(t.elapsed());
    }
    eprintln!(
        "perf: open + one get + close of a {}-entry cache: {:.2?}",
        n - n / 10,
        median(opens)
    );
}

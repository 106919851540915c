//! `kill -9` of a `larder put` part-way through never leaves a visible partial entry: a later
//! `larder get` is a miss or restores the complete file.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Sandbox, assert_exit, code, text};

const SIZE_MIB: usize = 512;

/// A file of `SIZE_MIB` MiB of incompressible bytes (one random-looking MiB, repeated with a
/// counter so no two MiB are equal).
fn big_file(sb: &Sandbox) -> Vec<u8> {
    let mut mib = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for b in mib.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut all = Vec::with_capacity(SIZE_MIB << 20);
    for i in 0..SIZE_MIB {
        mib[..8].copy_from_slice(&(i as u64).to_le_bytes());
        all.extend_from_slice(&mib);
    }
    let mut f = std::fs::File::create(sb.work.join("big.bin")).expect("creating big.bin");
    f.write_all(&all).expect("writing big.bin");
    all
}

/// `get KEY big.bin` in a fresh directory: a miss with nothing left behind, or the whole file.
fn check_get(sb: &Sandbox, key: &str, expected: &[u8], round: usize) -> bool {
    let dir = sb.root.join(format!("restore-{round}"));
    std::fs::create_dir_all(&dir).expect("creating restore dir");
    let out = sb.run_in(&dir, ["get", key, "big.bin"]);
    match code(&out) {
        1 => {
            let left: Vec<_> = std::fs::read_dir(&dir).expect("listing").collect();
            assert!(left.is_empty(), "a miss left files behind: {left:?}");
            false
        }
        0 => {
            let got = std::fs::read(dir.join("big.bin")).expect("restored file");
            assert!(
                got.len() == expected.len() && got == expected,
                "a hit restored a damaged file"
            );
            true
        }
        _ => panic!("get failed: {}", text(&out.stderr)),
    }
}

#[test]
fn killed_put_never_leaves_a_partial_entry() {
    let sb = Sandbox::new();
    let data = big_file(&sb);

    // How long a whole put takes here, to spread the kills over it.
    let started = Instant::now();
    assert_exit(&sb.run(["put", "complete", "big.bin"]), 0);
    let full = started.elapsed();
    assert!(check_get(&sb, "complete", &data, 0));
    // Dedup would make later puts trivially fast: start from an empty cache.
    std::fs::remove_dir_all(&sb.cache).expect("clearing the cache");

    let mut hits = 0;
    for (round, fraction) in [0.05, 0.2, 0.4, 0.6, 0.8, 0.95].into_iter().enumerate() {
        let key = format!("crash-{round}");
        let mut child = sb
            .larder()
            .args(["put", &key, "big.bin"])
            .spawn()
            .expect("spawning put");
        std::thread::sleep(full.mul_f64(fraction).max(Duration::from_millis(5)));
        // SIGKILL: no destructors, no flush.
        let _ = child.kill();
        let _ = child.wait();
        if check_get(&sb, &key, &data, round + 1) {
            hits += 1;
        }
    }
    eprintln!("full put took {full:?}; {hits} of 6 killed puts had completed");

    // The cache still works after all that.
    assert_exit(&sb.run(["put", "after", "big.bin"]), 0);
    assert!(check_get(&sb, "after", &data, 100));
}

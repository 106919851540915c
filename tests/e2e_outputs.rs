//! Directory outputs (nested, with an empty directory and a file large enough to be a blob)
//! and symlink outputs round-trip through `larder exec`.

mod common;

use std::path::Path;

use common::{Sandbox, assert_exit, count_lines};

/// Deterministic bytes that do not compress much.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn check_tree(dir: &Path, big: &[u8]) {
    let out = dir.join("out");
    assert_eq!(
        std::fs::read(out.join("a/b/small.txt")).expect("small file"),
        b"small\n"
    );
    assert_eq!(std::fs::read(out.join("a/big.bin")).expect("big file"), big);
    let empty = out.join("empty");
    assert!(empty.is_dir(), "empty directory not restored");
    assert_eq!(std::fs::read_dir(&empty).expect("listing").count(), 0);
    let link = out.join("link");
    let meta = std::fs::symlink_metadata(&link).expect("link restored");
    assert!(meta.file_type().is_symlink(), "link is not a symlink");
    assert_eq!(
        std::fs::read_link(&link).expect("readlink"),
        Path::new("a/b/small.txt")
    );
    assert_eq!(
        std::fs::read(&link).expect("reading through the link"),
        b"small\n"
    );
    // A top-level symlink output whose target does not exist is kept as it was.
    let dangling = dir.join("dangling");
    assert_eq!(
        std::fs::read_link(&dangling).expect("dangling link"),
        Path::new("nowhere/at/all")
    );
}

#[test]
fn directories_and_symlinks_round_trip() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    let big = noise(300 * 1024);
    let big_src = sb.write(&sb.root, "big.bin", &big);
    let script = format!(
        "echo run >> '{counter}'
mkdir -p out/a/b out/empty
echo small > out/a/b/small.txt
cp '{big}' out/a/big.bin
ln -s a/b/small.txt out/link
ln -s nowhere/at/all dangling
",
        counter = counter.display(),
        big = big_src.display()
    );
    let exec = |dir: &Path| {
        sb.run_in(
            dir,
            [
                "exec", "--out", "out", "--out", "dangling", "--", "sh", "-c", &script,
            ],
        )
    };
    assert_exit(&exec(&sb.work), 0);
    assert_eq!(count_lines(&counter), 1);
    check_tree(&sb.work, &big);

    // Same directory, outputs removed: a hit brings everything back.
    std::fs::remove_dir_all(sb.work.join("out")).expect("removing out");
    std::fs::remove_file(sb.work.join("dangling")).expect("removing dangling");
    assert_exit(&exec(&sb.work), 0);
    assert_eq!(count_lines(&counter), 1, "the command ran on a hit");
    check_tree(&sb.work, &big);

    // A fresh checkout: a hit too.
    let other = sb.root.join("other");
    std::fs::create_dir_all(&other).expect("creating checkout");
    assert_exit(&exec(&other), 0);
    assert_eq!(count_lines(&counter), 1);
    check_tree(&other, &big);

    // Placing by hard link (where the store can) restores the same tree.
    let linked = sb.root.join("linked");
    std::fs::create_dir_all(&linked).expect("creating checkout");
    let out = sb
        .larder_in(&linked)
        .env("LARDER_LINK", "hardlink")
        .args([
            "exec", "--out", "out", "--out", "dangling", "--", "sh", "-c", &script,
        ])
        .output()
        .expect("running larder");
    assert_exit(&out, 0);
    assert_eq!(count_lines(&counter), 1);
    check_tree(&linked, &big);
}

#[test]
fn a_missing_output_is_not_cached() {
    let sb = Sandbox::new();
    let counter = sb.root.join("runs");
    let script = format!("echo run >> '{}'", counter.display());
    for _ in 0..2 {
        let out = sb.run(["exec", "--out", "never-made", "--", "sh", "-c", &script]);
        assert_exit(&out, 0);
        assert!(
            common::text(&out.stderr).contains("never-made"),
            "{}",
            common::text(&out.stderr)
        );
    }
    assert_eq!(count_lines(&counter), 2);
}

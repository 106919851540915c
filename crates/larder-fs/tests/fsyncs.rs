//! What a short-lived process that copies an entry into the cache (a remote hit backfilling the
//! local tier) pays in fsyncs, counted with `strace` around a child process: none when the store
//! does not sync its files (the index records go to the access journal), some when it does.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use larder_core::{PutOptions, Store, StoreExt};
use larder_fs::{FsConfig, FsStore};

/// The child's cache directory; the child test does nothing without it.
const CHILD_DIR: &str = "LARDER_FS_FSYNC_CHILD_DIR";
/// Set in the child's environment when its store is to sync its files.
const CHILD_FSYNC: &str = "LARDER_FS_FSYNC_CHILD_SYNC";

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// fsync and fdatasync calls of the child test run in `root`, by every thread.
fn count_fsyncs(root: &Path, fsync: bool) -> usize {
    let trace = root.with_extension("strace");
    let mut cmd = Command::new("strace");
    cmd.arg("-f")
        .args(["-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backfill_in_a_child_process",
            "--include-ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, root);
    if fsync {
        cmd.env(CHILD_FSYNC, "1");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child did not run: {stdout}"
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    text.lines()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .count()
}

#[test]
fn a_backfill_without_fsync_syncs_nothing() {
    if !have_strace() {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is not installed (cargo xtask test installs it)"
        );
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for fsync in [false, true] {
        let root = dir.path().join(format!("cache-{fsync}"));
        // A cache that exists, as a local tier does.
        drop(FsStore::open(&root, FsConfig::default()).unwrap());
        let n = count_fsyncs(&root, fsync);
        eprintln!("fsync {fsync}: {n} fsync and fdatasync calls");
        if fsync {
            // The files and directories, and the index's commit: the count is real.
            assert!(n >= 3, "{n} fsyncs with fsync on");
        } else {
            assert_eq!(n, 0, "a backfill without fsync synced");
        }
    }
}

/// The child: what a backfill does to the local tier (the blobs it lacks, then the entry,
/// create-only), then a hit on it, in a process of its own.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by a_backfill_without_fsync_syncs_nothing"]
async fn backfill_in_a_child_process() {
    let Some(root) = std::env::var_os(CHILD_DIR) else {
        eprintln!("skipped: run by a_backfill_without_fsync_syncs_nothing");
        return;
    };
    let config = FsConfig::default().with_fsync(std::env::var_os(CHILD_FSYNC).is_some());
    let store = FsStore::open(&root, config).unwrap();
    let k = key("backfilled");
    let payload = random_bytes("backfill", 64 << 10);
    let (entry, digest) = put_blob_entry(&store, &key("shape"), &payload).await;
    assert!(store.find_missing(&[digest]).await.unwrap().is_empty());
    let mut e = larder_core::Entry::new(k.as_str(), "test");
    e.outputs = entry.outputs;
    store
        .put_entry_opts(&k, &e, PutOptions::create())
        .await
        .unwrap();
    assert!(store.get_entry(&k).await.unwrap().is_some());
    drop(store);
}

//! A fold of the index journals cut short (its process killed between moving a journal aside
//! and removing it) loses nothing: the next fold that may list the cache directory (`stats`, a
//! trim) takes the moved files no living process holds and folds them, and leaves alone those
//! of a fold still in progress.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use larder_core::{Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};

/// The child's cache directory; the child test does nothing without it.
const CHILD_DIR: &str = "LARDER_FS_FOLD_CHILD_DIR";

/// The journals moved aside in `root`, by name.
fn folding_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".folding"))
        .collect();
    names.sort();
    names
}

/// Write `a` (inline) and `b` (a blob) and hit `a` in a store that does not sync its files,
/// then hit `a` again in another: both journals (`changes.log`, `access.log`) are left for the
/// next fold. Returns the keys.
async fn journaled_writes(root: &Path) -> (larder_core::Key, larder_core::Key) {
    let (a, b) = (key("fold/a"), key("fold/b"));
    let store = FsStore::open(root, FsConfig::default()).unwrap();
    store
        .put_entry(&a, &inline_entry(&a, b"out"))
        .await
        .unwrap();
    put_blob_entry(&store, &b, &random_bytes("fold", 50_000)).await;
    assert!(store.get_entry(&a).await.unwrap().is_some());
    drop(store);
    let store = FsStore::open(root, FsConfig::default()).unwrap();
    assert!(store.get_entry(&a).await.unwrap().is_some());
    drop(store);
    assert!(root.join("changes.log").exists() && root.join("access.log").exists());
    (a, b)
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the child test `fold_held_by_a_child_process` on `root` and wait until it holds its fold.
fn child_holding_a_fold(root: &Path, marker: &Path) -> Killed {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fold_held_by_a_child_process",
            "--include-ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, root)
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the child exited before folding: {status}");
        }
        assert!(Instant::now() < deadline, "the child never began its fold");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fold_killed_midway_is_finished_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let marker = root.with_extension("holding");
    let mut child = child_holding_a_fold(&root, &marker);
    let pid = child.0.id();
    let moved = folding_files(&root);
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(
        moved.iter().all(|n| n.contains(&format!(".{pid}."))),
        "{moved:?}"
    );

    // While its process lives, the fold is its own.
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let s = store.stats().await.unwrap();
    assert_eq!((s.entries, s.hits), (0, 0), "a fold in progress was taken");
    assert_eq!(folding_files(&root), moved);

    // SIGKILL: the files stay, their locks go with the process.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(folding_files(&root), moved);

    let s = store.stats().await.unwrap();
    assert_eq!((s.entries, s.hits), (2, 2), "the killed fold's records");
    assert!(
        folding_files(&root).is_empty(),
        "{:?}",
        folding_files(&root)
    );
    // The same figures as a rebuild from the files finds.
    store.rebuild_index().await.unwrap();
    let rebuilt = store.stats().await.unwrap();
    assert_eq!((rebuilt.entries, rebuilt.bytes), (s.entries, s.bytes));
}

/// The child: journaled writes, then a fold that stops before its commit and holds the moved
/// journals until the process is killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by a_fold_killed_midway_is_finished_by_the_next_one"]
async fn fold_held_by_a_child_process() {
    let Some(root) = std::env::var_os(CHILD_DIR) else {
        eprintln!("skipped: run by a_fold_killed_midway_is_finished_by_the_next_one");
        return;
    };
    let root = PathBuf::from(root);
    journaled_writes(&root).await;
    let fold = larder_fs::testkit::begin_fold(&root).unwrap();
    assert_eq!(fold.journals(), 2);
    std::fs::write(root.with_extension("holding"), b"").unwrap();
    // Killed long before this; the bound only keeps an orphan from staying forever.
    std::thread::sleep(Duration::from_secs(300));
    drop(fold);
}

/// The locks of an ended fold are gone as a killed one's are. A process's exit (a quick flush)
/// does not list the directory, so leaves the moved files; a trim folds them and evicts from
/// what they hold.
#[tokio::test(flavor = "multi_thread")]
async fn a_trim_folds_what_a_fold_cut_short_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (a, b) = journaled_writes(&root).await;
    drop(larder_fs::testkit::begin_fold(&root).unwrap());
    let moved = folding_files(&root);
    assert_eq!(moved.len(), 2, "{moved:?}");

    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    // (access times are in milliseconds: `b`'s hit comes after `a`'s)
    std::thread::sleep(Duration::from_millis(5));
    assert!(store.get_entry(&b).await.unwrap().is_some());
    store.flush().await.unwrap();
    assert_eq!(folding_files(&root), moved, "an exit folded leftovers");

    let mut opts = TrimOptions::default();
    opts.max_entries = Some(1);
    let report = store.trim(&opts, None).await.unwrap();
    assert_eq!(
        (report.evicted_entries, report.remaining_entries),
        (1, 1),
        "{report:?}"
    );
    assert!(
        folding_files(&root).is_empty(),
        "{:?}",
        folding_files(&root)
    );
    // `a`, hit before `b`, was the least recently used.
    assert!(store.get_entry(&a).await.unwrap().is_none());
    assert!(store.get_entry(&b).await.unwrap().is_some());
    let s = store.stats().await.unwrap();
    assert_eq!((s.entries, s.hits), (1, 4));
}

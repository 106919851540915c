//! Many writers on one cache directory: handles standing in for processes, and real processes.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use larder_core::artifacts::{Restore, RestoreOptions, restore_outputs};
use larder_core::{Entry, Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};

/// Check that the incrementally maintained index agrees with one rebuilt from the files, and
/// that every entry's blobs are present.
async fn assert_consistent(root: &Path) {
    let store = FsStore::open(root, FsConfig::default()).unwrap();
    let incremental = store.stats().await.unwrap();
    let files = count_files(&root.join("entries")) as u64;
    assert_eq!(incremental.entries, files, "index entries vs entry files");
    store.rebuild_index().await.unwrap();
    let rebuilt = store.stats().await.unwrap();
    assert_eq!(
        (incremental.entries, incremental.bytes),
        (rebuilt.entries, rebuilt.bytes),
        "incremental index differs from a rebuild"
    );
}

async fn worker(store: Arc<FsStore>, id: usize, rounds: usize) {
    for r in 0..rounds {
        let k = key(&format!("hot/{}", (id * 7 + r) % 13));
        match r % 5 {
            0 | 1 => {
                let body = format!("writer {id} round {r}");
                store
                    .put_entry(&k, &inline_entry(&k, body.as_bytes()))
                    .await
                    .unwrap();
            }
            2 => {
                // Shared and private blobs.
                let shared = random_bytes(&format!("shared{}", r % 3), 20_000);
                put_blob_entry(&store, &k, &shared).await;
                let own = random_bytes(&format!("own{id}-{r}"), 9_000);
                put_blob_entry(&store, &key(&format!("own/{id}/{r}")), &own).await;
            }
            3 => {
                if let Some(e) = store.get_entry(&k).await.unwrap() {
                    let dir = tempfile::tempdir().unwrap();
                    // Blobs may vanish under a concurrent trim: a miss, never garbage.
                    let res =
                        restore_outputs(&*store, &e, dir.path(), &RestoreOptions::whole_entry())
                            .await
                            .unwrap();
                    if res == Restore::Restored {
                        assert!(dir.path().join("out").exists());
                    }
                }
            }
            _ => {
                store.delete(&k).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_handles_hammer_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let handles: Vec<Arc<FsStore>> = (0..4)
        .map(|_| {
            let c = FsConfig::default().with_flush_interval(Duration::from_millis(5));
            Arc::new(FsStore::open(&root, c).unwrap())
        })
        .collect();
    let mut tasks = Vec::new();
    for id in 0..16 {
        tasks.push(tokio::spawn(worker(Arc::clone(&handles[id % 4]), id, 60)));
    }
    let trimmer = Arc::clone(&handles[0]);
    tasks.push(tokio::spawn(async move {
        let mut o = TrimOptions::default();
        o.max_entries = Some(20);
        for _ in 0..10 {
            trimmer.trim(&o, None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
    drop(handles);
    assert_eq!(count_files(&root.join("tmp")), 0);
    assert_consistent(&root).await;
}

/// One round of the multi-process race, run in a child process (see below).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by processes_race_on_one_key in child processes"]
async fn child_writer() {
    let (Ok(root), Ok(id)) = (
        std::env::var("LARDER_FS_TEST_ROOT"),
        std::env::var("LARDER_FS_TEST_ID"),
    ) else {
        return;
    };
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let k = key("contended");
    for r in 0..20 {
        let bytes = random_bytes(&format!("proc{id}-{}", r % 2), 30_000);
        let (mut e, _) = put_blob_entry(&store, &k, &bytes).await;
        // Both an inline and a blob output, so a mixed entry would show.
        e.outputs
            .push(inline_entry(&k, id.as_bytes()).outputs.remove(0));
        e.outputs[1].path = "id".into();
        store.put_entry(&k, &e).await.unwrap();
        store.get_entry(&k).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_race_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    // Create the cache first so the children race on entries, not on creating the index.
    drop(FsStore::open(&root, FsConfig::default()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|id| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_writer", "--ignored", "--quiet"])
                .env("LARDER_FS_TEST_ROOT", &root)
                .env("LARDER_FS_TEST_ID", id.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer process failed");
    }
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    let e: Entry = store
        .get_entry(&key("contended"))
        .await
        .unwrap()
        .expect("one entry");
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        restore_outputs(&store, &e, out.path(), &RestoreOptions::whole_entry())
            .await
            .unwrap(),
        Restore::Restored
    );
    // The blob output and the id output come from the same writer.
    let id = std::fs::read_to_string(out.path().join("id")).unwrap();
    let blob = std::fs::read(out.path().join("out")).unwrap();
    assert!(
        blob == random_bytes(&format!("proc{id}-0"), 30_000)
            || blob == random_bytes(&format!("proc{id}-1"), 30_000),
        "outputs of different writers mixed"
    );
    drop(store);
    assert_eq!(count_files(&root.join("tmp")), 0);
    assert_consistent(&root).await;
}

/// Writes until killed (see `killed_writer_leaves_nothing_partial`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by killed_writer_leaves_nothing_partial in a child process"]
async fn child_endless_writer() {
    let Ok(root) = std::env::var("LARDER_FS_TEST_KILL_ROOT") else {
        return;
    };
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    for i in 0.. {
        let bytes = random_bytes(&format!("endless{i}"), 2 << 20);
        put_blob_entry(&store, &key(&format!("endless/{i}")), &bytes).await;
        let k = key(&format!("small/{i}"));
        store
            .put_entry(&k, &inline_entry(&k, &bytes[..1000]))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_writer_leaves_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    drop(FsStore::open(&root, FsConfig::default()).unwrap());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_endless_writer", "--ignored", "--quiet"])
        .env("LARDER_FS_TEST_KILL_ROOT", &root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it get going, then kill it mid-write.
    let entries = root.join("entries");
    for _ in 0..200 {
        if count_files(&entries) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = count_files(&entries);
    assert!(
        written >= 2,
        "the writer wrote nothing before it was killed"
    );
    let store = FsStore::open(&root, FsConfig::default()).unwrap();
    // Every published entry decodes (a rebuild would remove any that does not) ...
    store.rebuild_index().await.unwrap();
    assert_eq!(
        count_files(&entries),
        written,
        "a partial entry was published"
    );
    // ... and every published blob verifies.
    for sub in std::fs::read_dir(root.join("blobs")).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let name = f.file_name().into_string().unwrap();
            let d: larder_core::Digest = name.trim_end_matches(".zst").parse().unwrap();
            let bytes = store.get_blob_bytes(&d, 1 << 30).await;
            assert!(bytes.is_ok_and(|b| b.is_some()), "blob {name} is partial");
        }
    }
    // Its unfinished temporary files stay in tmp/ (a trim sweeps them once an hour old).
    assert!(count_files(&root.join("tmp")) <= 2);
}

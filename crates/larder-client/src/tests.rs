//! The flow over a real filesystem store in a temporary directory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use larder_core::admission::{AdmissionCandidate, AdmissionPolicy};
use larder_core::normalize::BaseDirs;
use larder_core::{Key, Store, StoreExt, TrimOptions};
use larder_fs::{FsConfig, FsStore};
use tempfile::TempDir;

use crate::{
    Cache, Declared, Done, Input, Lookup, Progress, Queued, Restore, Stored, Streams, Task,
    Transfer, Uploads,
};

/// A cache directory, a directory outputs are written in, and one they are restored to.
struct Dirs {
    cache: TempDir,
    work: TempDir,
    other: TempDir,
}

fn dirs() -> Dirs {
    let d = || tempfile::tempdir().expect("a temporary directory");
    Dirs {
        cache: d(),
        work: d(),
        other: d(),
    }
}

fn fs_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(FsStore::open(dir, FsConfig::default()).expect("open the fs store"))
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn write(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

fn key(s: &str) -> Key {
    Key::new(s).expect("a valid key")
}

/// [`Cache::hit`] of a store that does not fail.
async fn hit(cache: &Cache<'_>, k: &Key, root: &Path, outputs: &[String]) -> Option<crate::Hit> {
    cache.hit(k, root, outputs).await.expect("look up")
}

/// Collect `outputs` from `root` and store them under `k`, with `streams`.
async fn put(cache: &Cache<'_>, root: &Path, k: &Key, outputs: &[String], streams: Streams) {
    let mut prepared = cache.collect(root, k, outputs, "test").expect("collect");
    prepared.entry.exit_code = Some(3);
    prepared.entry.cost_ms = 1500;
    match cache.put(k, prepared, streams).await.expect("put") {
        Stored::Now { .. } => {}
        other => panic!("not stored: {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_task_hits_with_its_outputs_streams_and_exit_code() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path())).with_inline_limit(16);
    write(d.work.path(), "small.txt", b"tiny");
    write(d.work.path(), "out/big.bin", &[7u8; 5000]);
    let outputs = names(&["small.txt", "out"]);
    let k = key("task-1");
    assert!(
        hit(&cache, &k, d.other.path(), &outputs).await.is_none(),
        "an empty cache misses"
    );
    let streams = Streams {
        stdout: b"compiled\n".to_vec(),
        stderr: vec![b'w'; 100],
    };
    put(&cache, d.work.path(), &k, &outputs, streams).await;

    let hit = hit(&cache, &k, d.other.path(), &outputs)
        .await
        .expect("a hit");
    assert_eq!(hit.exit_code, 3);
    assert_eq!(hit.cost_ms, 1500);
    assert_eq!(hit.outputs, 3, "small.txt, out/ and out/big.bin");
    assert_eq!(hit.stdout, b"compiled\n");
    assert_eq!(
        hit.stderr,
        vec![b'w'; 100],
        "a stream over the inline limit, as a blob"
    );
    let read = |p: &str| std::fs::read(d.other.path().join(p)).expect("restored");
    assert_eq!(read("small.txt"), b"tiny");
    assert_eq!(read("out/big.bin"), vec![7u8; 5000]);
}

#[tokio::test]
async fn lookup_cuts_the_entry_to_what_is_asked_for() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path()));
    write(d.work.path(), "a/1", b"one");
    write(d.work.path(), "a/2", b"two");
    write(d.work.path(), "b", b"bee");
    let k = key("files");
    let streams = Streams {
        stdout: b"out".to_vec(),
        stderr: Vec::new(),
    };
    put(&cache, d.work.path(), &k, &names(&["a", "b"]), streams).await;

    let Lookup::Found(entry) = cache.lookup(&k, &names(&["a"])).await.expect("look up") else {
        panic!("not found");
    };
    let paths: Vec<&str> = entry.outputs.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["a", "a/1", "a/2"]);
    assert!(entry.stdout.is_none(), "captured streams are dropped");
    let wanted = names(&["a"]);
    let restored = cache
        .restore(&k, &entry, d.other.path(), Declared::Only(&wanted))
        .await
        .expect("restore");
    assert_eq!(restored, Restore::Restored);
    assert!(d.other.path().join("a/2").is_file());
    assert!(
        !d.other.path().join("b").exists(),
        "only what was asked for"
    );

    match cache.lookup(&k, &names(&["c"])).await.expect("look up") {
        Lookup::Absent(name) => assert_eq!(name, "c"),
        other => panic!("expected Absent, got {other:?}"),
    }
    assert!(matches!(
        cache.lookup(&key("nothing"), &[]).await.expect("look up"),
        Lookup::Miss
    ));
}

#[tokio::test]
async fn a_poisoned_entry_is_a_miss_and_is_removed() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path()));
    write(d.work.path(), "app", b"binary");
    write(d.work.path(), "extra", b"not declared by the task");
    let k = key("poisoned");
    put(
        &cache,
        d.work.path(),
        &k,
        &names(&["app", "extra"]),
        Streams::default(),
    )
    .await;

    // The task declares only `app`: an entry naming `extra` too was not written by it.
    let hit = hit(&cache, &k, d.other.path(), &names(&["app"])).await;
    assert!(hit.is_none());
    assert!(!d.other.path().join("app").exists(), "nothing written");
    assert!(!d.other.path().join("extra").exists(), "nothing written");
    assert!(
        matches!(cache.lookup(&k, &[]).await.expect("look up"), Lookup::Miss),
        "the entry is gone"
    );
}

#[tokio::test]
async fn a_symlink_leaving_the_root_is_refused_unless_allowed() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path()));
    std::os::unix::fs::symlink("/etc/passwd", d.work.path().join("link")).expect("symlink");
    let outputs = names(&["link"]);
    let prepared = cache
        .collect(d.work.path(), &key("l"), &outputs, "test")
        .expect("collect");
    assert_eq!(
        cache
            .external_symlink(&prepared.entry)
            .map(|o| o.path.as_str()),
        Some("link")
    );
    let k = key("l");
    cache
        .put(&k, prepared.clone(), Streams::default())
        .await
        .expect("put");
    assert!(
        hit(&cache, &k, d.other.path(), &outputs).await.is_none(),
        "refused on restore, as poisoned"
    );

    let allowing = cache.clone().with_external_symlinks(true);
    assert!(allowing.external_symlink(&prepared.entry).is_none());
    allowing
        .put(&k, prepared, Streams::default())
        .await
        .expect("put");
    assert!(hit(&allowing, &k, d.other.path(), &outputs).await.is_some());
    let target = std::fs::read_link(d.other.path().join("link")).expect("a symlink");
    assert_eq!(target, Path::new("/etc/passwd"));
}

#[tokio::test]
async fn a_missing_blob_is_a_miss_that_writes_nothing() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path())).with_inline_limit(0);
    write(d.work.path(), "f", b"bytes in a blob");
    let k = key("incomplete");
    let prepared = cache
        .collect(d.work.path(), &k, &names(&["f"]), "test")
        .expect("collect");
    // The entry without its blob, as a store that lost the blob would hold it.
    cache
        .store()
        .put_entry(&k, &prepared.entry)
        .await
        .expect("put the entry alone");
    let Lookup::Found(entry) = cache.lookup(&k, &[]).await.expect("look up") else {
        panic!("the entry is there");
    };
    let restored = cache
        .restore(&k, &entry, d.other.path(), Declared::Entry)
        .await
        .expect("restore");
    assert_eq!(restored, Restore::Missing);
    assert!(!d.other.path().join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_uploads_are_stored_in_the_background() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path())).with_inline_limit(8);
    let mut uploads = Uploads::new(2);
    let mut queued_bytes = 0;
    // Uploads that end while a later one is queued are handed back by that `queue` call.
    let mut done = Vec::new();
    for i in 0..3 {
        let name = format!("out{i}");
        write(d.work.path(), &name, &vec![i as u8; 1000 + i]);
        let k = key(&format!("queued-{i}"));
        let prepared = cache
            .collect(d.work.path(), &k, &[name], "test")
            .expect("collect");
        let streams = Streams {
            stdout: b"log line that is long".to_vec(),
            stderr: Vec::new(),
        };
        match cache.queue(&mut uploads, k, prepared, streams, 2).await {
            Queued::Uploading {
                outputs,
                bytes,
                finished,
            } => {
                assert_eq!(outputs, 1);
                queued_bytes += bytes;
                done.extend(finished);
            }
            other => panic!("not queued: {other:?}"),
        }
    }
    done.extend(uploads.finish(false).await);
    assert_eq!(done.len(), 3, "every upload ends once: {done:?}");
    let stored: u64 = done
        .iter()
        .map(|d| match d {
            Done::Stored(bytes) => *bytes,
            other => panic!("upload not stored: {other:?}"),
        })
        .sum();
    assert_eq!(stored, queued_bytes);
    for i in 0..3 {
        let hit = hit(
            &cache,
            &key(&format!("queued-{i}")),
            d.other.path(),
            &[format!("out{i}")],
        )
        .await
        .expect("stored in the background");
        assert_eq!(hit.stdout, b"log line that is long");
    }
}

/// Admits entries of at most `max` bytes.
#[derive(Debug)]
struct SizeCap {
    max: u64,
}

impl AdmissionPolicy for SizeCap {
    fn name(&self) -> &str {
        "size-cap"
    }

    fn admit(&self, candidate: AdmissionCandidate, _now_ms: u64) -> bool {
        candidate.size <= self.max
    }
}

#[tokio::test]
async fn the_admission_policy_sees_outputs_and_streams() {
    let d = dirs();
    let mut cache = Cache::new(fs_store(d.cache.path()));
    cache.set_admission(Some(Arc::new(SizeCap { max: 100 })));
    write(d.work.path(), "f", &[1u8; 60]);
    let k = key("admitted");
    let prepared = cache
        .collect(d.work.path(), &k, &names(&["f"]), "test")
        .expect("collect");
    let streams = |n| Streams {
        stdout: vec![b'x'; n],
        stderr: Vec::new(),
    };
    match cache
        .put(&k, prepared.clone(), streams(50))
        .await
        .expect("put")
    {
        Stored::Refused(policy) => assert_eq!(policy, "size-cap"),
        other => panic!("60 + 50 bytes admitted: {other:?}"),
    }
    let mut uploads = Uploads::new(1);
    let queued = cache
        .queue(&mut uploads, k.clone(), prepared.clone(), streams(50), 1)
        .await;
    assert!(matches!(queued, Queued::Refused(_)));
    assert!(uploads.is_empty(), "nothing queued");
    assert!(matches!(
        cache.lookup(&k, &[]).await.expect("look up"),
        Lookup::Miss
    ));
    match cache.put(&k, prepared, streams(10)).await.expect("put") {
        Stored::Now { outputs, bytes } => assert_eq!((outputs, bytes), (1, 70)),
        other => panic!("70 bytes refused: {other:?}"),
    }
}

#[tokio::test]
async fn trims_only_when_over_its_budget() {
    let d = dirs();
    let store = fs_store(d.cache.path());
    let unbudgeted = Cache::new(store.clone());
    let mut budget = TrimOptions::default();
    budget.max_entries = Some(2);
    let cache = Cache::new(store).with_budget(budget, Some(d.cache.path().to_path_buf()));
    let version = async |i: usize| {
        write(d.work.path(), "f", format!("version {i}").as_bytes());
        let k = key(&format!("t{i}"));
        put(
            &cache,
            d.work.path(),
            &k,
            &names(&["f"]),
            Streams::default(),
        )
        .await;
    };
    version(0).await;
    version(1).await;
    assert!(
        cache.trim_if_over().await.expect("trim").is_none(),
        "at the budget"
    );
    version(2).await;
    assert!(
        unbudgeted.trim_if_over().await.expect("trim").is_none(),
        "no budget, no trim"
    );
    let report = cache
        .trim_if_over()
        .await
        .expect("trim")
        .expect("over budget");
    assert_eq!(report.evicted_entries, 1);
    assert_eq!(report.remaining_entries, 2);
    assert!(
        matches!(
            cache.lookup(&key("t2"), &[]).await.expect("look up"),
            Lookup::Found(_)
        ),
        "the newest entry stays"
    );
}

fn inputs(root: &Path, names: &[&str]) -> Vec<Input> {
    names
        .iter()
        .map(|n| Input {
            name: n.to_string(),
            path: root.join(n),
        })
        .collect()
}

#[test]
fn signing_covers_inputs_command_and_salt_and_keeps_the_stat_cache() {
    let d = dirs();
    write(d.work.path(), "a.c", b"int a;");
    write(d.work.path(), "b.h", b"#define B");
    let statcache = d.cache.path().join("statcache.bin");
    let root = d.work.path().to_str().expect("a UTF-8 path");
    let normalizer = BaseDirs::new([root]);
    let inputs = inputs(d.work.path(), &["a.c", "b.h"]);
    let (command, outputs) = (names(&["cc", "-c", "a.c"]), names(&["a.o"]));
    let task = Task {
        kind: "exec",
        command: &command,
        env: &[],
        inputs: &inputs,
        outputs: &outputs,
        salt: "",
    };
    let sign = |task: &Task<'_>| {
        let digests = task.hash_inputs(Some(statcache.clone())).expect("hash");
        task.sign(&digests, &normalizer).expect("sign")
    };
    let first = sign(&task);
    assert!(statcache.is_file(), "the stat cache is saved");
    assert_eq!(sign(&task), first, "the same task, the same key");
    assert_ne!(sign(&Task { salt: "v2", ..task }), first);
    let other_command = names(&["cc", "-O2", "-c", "a.c"]);
    assert_ne!(
        sign(&Task {
            command: &other_command,
            ..task
        }),
        first
    );

    // The same files in another checkout sign alike: the root is normalized away.
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    write(elsewhere.path(), "a.c", b"int a;");
    write(elsewhere.path(), "b.h", b"#define B");
    let moved = self::inputs(elsewhere.path(), &["a.c", "b.h"]);
    let moved_task = Task {
        inputs: &moved,
        ..task
    };
    let digests = moved_task.hash_inputs(None).expect("hash");
    let moved_root = elsewhere.path().to_str().expect("a UTF-8 path");
    let key = moved_task
        .sign(&digests, &BaseDirs::new([moved_root]))
        .expect("sign");
    assert_eq!(key, first);

    write(elsewhere.path(), "b.h", b"#define B 2");
    let digests = moved_task.hash_inputs(None).expect("hash");
    let changed = moved_task
        .sign(&digests, &BaseDirs::new([moved_root]))
        .expect("sign");
    assert_ne!(changed, first, "an input's contents are signed");

    let missing = self::inputs(d.work.path(), &["gone.c"]);
    let err = Task {
        inputs: &missing,
        ..task
    }
    .hash_inputs(None)
    .expect_err("an input that is not there");
    assert!(matches!(err, crate::Error::Hash(_)));
}

/// Counts what a [`Progress`] is told.
#[derive(Debug, Default)]
struct Counted {
    /// (total, what) of each transfer followed.
    started: std::sync::Mutex<Vec<(u64, &'static str)>>,
    bytes: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

struct Followed {
    bytes: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Transfer for Followed {
    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl Progress for Counted {
    fn transfer(&self, total: u64, what: &'static str) -> Option<Arc<dyn Transfer>> {
        self.started
            .lock()
            .expect("not poisoned")
            .push((total, what));
        (total > 0).then(|| {
            Arc::new(Followed {
                bytes: self.bytes.clone(),
                finished: self.finished.clone(),
            }) as Arc<dyn Transfer>
        })
    }
}

#[tokio::test]
async fn progress_follows_blob_transfers() {
    let d = dirs();
    let counted = Counted::default();
    let cache = Cache::new(fs_store(d.cache.path()))
        .with_inline_limit(16)
        .with_progress(&counted);
    write(d.work.path(), "big", &[9u8; 300_000]);
    write(d.work.path(), "small", b"inline");
    let outputs = names(&["big", "small"]);
    let k = key("progress");
    put(&cache, d.work.path(), &k, &outputs, Streams::default()).await;
    assert_eq!(counted.bytes.load(Ordering::Relaxed), 300_000, "stored");
    hit(&cache, &k, d.other.path(), &outputs)
        .await
        .expect("a hit");
    assert_eq!(
        *counted.started.lock().expect("not poisoned"),
        [(300_000, "storing"), (300_000, "restoring")]
    );
    assert_eq!(counted.bytes.load(Ordering::Relaxed), 600_000, "restored");
    assert_eq!(counted.finished.load(Ordering::Relaxed), 2);
}

/// A server or a benchmark runs the flow on spawned tasks: its futures are `Send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_runs_on_spawned_tasks() {
    let d = dirs();
    let cache = Cache::new(fs_store(d.cache.path()));
    write(d.work.path(), "o", b"spawned");
    let (work, other) = (d.work.path().to_path_buf(), d.other.path().to_path_buf());
    let hit = tokio::spawn(async move {
        let (k, outputs) = (key("spawned"), names(&["o"]));
        let prepared = cache.collect(&work, &k, &outputs, "test")?;
        cache.put(&k, prepared, Streams::default()).await?;
        cache.trim_if_over().await?;
        cache.lookup(&k, &outputs).await?;
        cache.hit(&k, &other, &outputs).await
    })
    .await
    .expect("the task ran")
    .expect("no store error");
    assert!(hit.is_some());
    assert_eq!(
        std::fs::read(d.other.path().join("o")).expect("restored"),
        b"spawned"
    );
}

//! Confined restores (DESIGN §8b): an entry is untrusted input. A restore writes only the
//! outputs the caller declared, beneath the build root, never through a symlink in a parent
//! (one that was there, or one swapped in while it runs), never removing what is not a
//! declared output, and never plants a symlink pointing out of the tree unless allowed.
//!
//! Real files in temporary directories, the in-memory store from the testkit.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use larder_core::artifacts::{Restore, RestoreOptions, discard_poisoned, restore_outputs};
use larder_core::testkit::MemoryStore;
use larder_core::{Content, Entry, ErrorKind, Key, Output, OutputKind, StoreExt};

/// Run before each test: nothing here; `confined_restore_fallback.rs` includes these tests and
/// switches to the fallbacks first.
#[allow(dead_code)]
pub(crate) fn before() {}

fn file(path: &str, bytes: &[u8], executable: bool) -> Output {
    Output {
        path: path.into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable,
        },
    }
}

fn dir(path: &str) -> Output {
    Output {
        path: path.into(),
        kind: OutputKind::Dir,
    }
}

fn link(path: &str, target: &str) -> Output {
    Output {
        path: path.into(),
        kind: OutputKind::Symlink {
            target: target.into(),
        },
    }
}

/// A file output whose bytes are a blob in `store` (placed through `place_blob`).
async fn blob_file(store: &MemoryStore, path: &str, len: usize) -> Output {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let digest = store
        .put_blob_bytes(bytes.into())
        .await
        .expect("storing a blob");
    Output {
        path: path.into(),
        kind: OutputKind::File {
            content: Content::blob(digest, len as u64),
            executable: false,
        },
    }
}

/// Put an entry with `outputs` under `key` and read it back as a reader would.
async fn stored(store: &MemoryStore, key: &Key, outputs: Vec<Output>) -> Entry {
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs = outputs;
    store.put_entry(key, &e).await.expect("put_entry");
    store
        .get_entry(key)
        .await
        .expect("get_entry")
        .expect("the entry just stored")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Everything below `dir`, as sorted relative paths (not following symlinks).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A build root (`work`) with a source directory and git hooks, and an empty directory
/// outside it.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    crate::before();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(work.join("src")).unwrap();
    fs::write(work.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
    fs::create_dir_all(work.join(".git/hooks")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    (tmp, work, outside)
}

/// (1) The attack as found: an entry rewritten with extra outputs (a symlink out of the tree,
/// a file where the directory `src/` is, an executable git hook) restored for a task that
/// declared only `out1` is a miss, touches nothing, and is removed from the store.
#[tokio::test(flavor = "multi_thread")]
async fn extra_outputs_make_a_poisoned_entry() {
    let (_tmp, work, outside) = setup();
    let before = listing(&work);
    let store = MemoryStore::new();
    let key = Key::new("poisoned-1").unwrap();
    let outside_s = outside.to_str().unwrap();
    let e = stored(
        &store,
        &key,
        vec![
            file("out1", b"the real output\n", false),
            link("lnk", outside_s),
            file("src", b"not a directory any more\n", false),
            file(".git/hooks/pre-commit", b"#!/bin/sh\necho pwned\n", true),
        ],
    )
    .await;
    let declared = names(&["out1"]);
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .expect("a poisoned entry is a miss, not an error");
    let Restore::Poisoned { path, reason } = got else {
        panic!("restored a poisoned entry: {got:?}");
    };
    assert_eq!(path, "lnk", "the first undeclared output is named");
    // Nothing was written: not even the declared output of a poisoned entry.
    assert_eq!(listing(&work), before);
    assert!(fs::symlink_metadata(work.join("lnk")).is_err());
    assert!(work.join("src").is_dir());
    assert!(!work.join(".git/hooks/pre-commit").exists());
    assert!(listing(&outside).is_empty());

    assert!(discard_poisoned(&store, &key, &path, reason).await);
    assert!(store.get_entry(&key).await.unwrap().is_none());

    // Each extra output alone is enough.
    for extra in [
        file("src", b"x", false),
        file(".git/hooks/pre-commit", b"#!/bin/sh\n", true),
        link("lnk", "out1"),
        dir("out1-not-quite"),
    ] {
        let name = extra.path.clone();
        let e = stored(&store, &key, vec![file("out1", b"ok", false), extra]).await;
        let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
            .await
            .unwrap();
        assert_eq!(
            got,
            Restore::Poisoned {
                path: name.clone(),
                reason: "is not an output the task declared"
            }
        );
        assert_eq!(listing(&work), before, "after an entry with {name}");
    }

    // The honest entry of the same task restores, and a declared directory brings what is
    // below it.
    let e = stored(
        &store,
        &key,
        vec![
            file("out1", b"ok\n", false),
            dir("gen"),
            file("gen/a.rs", b"// generated\n", false),
            dir("gen/sub"),
            blob_file(&store, "gen/sub/big.bin", 100_000).await,
        ],
    )
    .await;
    let declared = names(&["out1", "gen"]);
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .unwrap();
    assert_eq!(got, Restore::Restored);
    assert_eq!(fs::read(work.join("out1")).unwrap(), b"ok\n");
    assert_eq!(fs::read(work.join("gen/a.rs")).unwrap(), b"// generated\n");
    assert_eq!(
        fs::metadata(work.join("gen/sub/big.bin")).unwrap().len(),
        100_000
    );
    assert!(work.join("src/main.c").is_file());
}

/// What stands where a declared output goes is replaced, a directory included; what stands
/// anywhere else is not.
#[tokio::test(flavor = "multi_thread")]
async fn only_declared_outputs_are_replaced() {
    let (_tmp, work, outside) = setup();
    fs::create_dir_all(work.join("out1/old")).unwrap();
    fs::write(work.join("out1/old/stale.o"), b"stale").unwrap();
    // A symlink where a declared output goes is replaced itself, not written through.
    symlink(&outside, work.join("out2")).unwrap();
    let store = MemoryStore::new();
    let key = Key::new("replace").unwrap();
    let e = stored(
        &store,
        &key,
        vec![
            file("out1", b"now a file", false),
            file("out2", b"also", false),
        ],
    )
    .await;
    let declared = names(&["out1", "out2"]);
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .unwrap();
    assert_eq!(got, Restore::Restored);
    assert_eq!(fs::read(work.join("out1")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(work.join("out2")).unwrap().is_file());
    assert!(listing(&outside).is_empty());
    assert!(work.join("src/main.c").is_file());
}

/// (2) An entry holding `lnk/pwned`, where `lnk` is a symlink already on disk pointing out of
/// the tree, writes nothing outside, whether the file is inline or a blob, declared or asked
/// for as a whole entry, and however deep the symlink is.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_on_disk_is_never_followed() {
    let (_tmp, work, outside) = setup();
    symlink(&outside, work.join("lnk")).unwrap();
    fs::create_dir_all(work.join("a")).unwrap();
    symlink(&outside, work.join("a/b")).unwrap();
    // A symlink to a directory inside the tree is not followed either.
    symlink("src", work.join("inner")).unwrap();
    let store = MemoryStore::new();
    let cases = [
        vec![file("lnk/pwned", b"pwned", false)],
        vec![blob_file(&store, "lnk/pwned", 10_000).await],
        vec![file("lnk/deeper/pwned", b"pwned", true)],
        vec![file("a/b/c/pwned", b"pwned", false)],
        vec![link("lnk/pwned", "x")],
        vec![dir("lnk/newdir")],
        vec![file("inner/pwned.c", b"pwned", false)],
    ];
    for (i, outputs) in cases.into_iter().enumerate() {
        let key = Key::new(format!("through-link-{i}")).unwrap();
        let first = outputs[0].path.clone();
        let e = stored(&store, &key, outputs).await;
        let declared = names(&[first.as_str()]);
        for opts in [
            RestoreOptions::declared(&declared),
            RestoreOptions::whole_entry(),
        ] {
            let got = restore_outputs(&store, &e, &work, &opts).await;
            match got {
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{first}: {e}"),
                Ok(r) => panic!("{first}: restored through a symlink: {r:?}"),
            }
            assert!(listing(&outside).is_empty(), "{first}: wrote outside");
            assert!(
                !work.join("src/pwned.c").exists(),
                "{first}: followed inner"
            );
        }
    }
    // The symlinks themselves are left alone (they are not outputs).
    assert!(fs::symlink_metadata(work.join("lnk")).unwrap().is_symlink());
    assert!(fs::symlink_metadata(work.join("a/b")).unwrap().is_symlink());
}

/// Swap `a` and `b` (both in `dir`) atomically.
fn exchange(dir: &Path, a: &str, b: &str) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(dir.join(a).as_os_str().as_bytes()).unwrap();
    let b = CString::new(dir.join(b).as_os_str().as_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    rc == 0
}

/// (3) A parent directory swapped with a symlink to an outside directory while restores run:
/// nothing is ever written outside, whatever each restore's outcome.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_swapped_in_during_restores_is_never_followed() {
    let (_tmp, work, outside) = setup();
    let parent = work.join("out1");
    fs::create_dir_all(parent.join("sub")).unwrap();
    symlink(&outside, parent.join("sub.swap")).unwrap();
    let store = MemoryStore::new();
    let declared = names(&["out1"]);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, parent) = (stop.clone(), parent.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if exchange(&parent, "sub", "sub.swap") {
                    swaps += 1;
                }
                std::thread::yield_now();
            }
            swaps
        })
    };
    let (mut restored, mut refused) = (0u32, 0u32);
    for i in 0..400 {
        let key = Key::new(format!("race-{i}")).unwrap();
        let e = stored(
            &store,
            &key,
            vec![
                dir("out1"),
                file(&format!("out1/sub/f{i}"), b"small", i % 3 == 0),
                file(&format!("out1/sub/deep{}/g", i % 5), b"deeper", false),
                blob_file(&store, &format!("out1/sub/big{}", i % 4), 5_000 + i).await,
                link(&format!("out1/sub/l{}", i % 2), "f0"),
            ],
        )
        .await;
        match restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared)).await {
            Ok(Restore::Restored) => restored += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => refused += 1,
        }
        let escaped = listing(&outside);
        assert!(escaped.is_empty(), "restore {i} wrote outside: {escaped:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{swaps} swaps; {restored} restores completed, {refused} refused");
    assert!(swaps > 0, "the swapper never swapped");
    assert!(listing(&outside).is_empty());
}

/// (4) A symlink output whose target leaves the root is refused unless allowed; targets that
/// stay inside are restored.
#[tokio::test(flavor = "multi_thread")]
async fn symlink_targets_must_stay_inside() {
    let (_tmp, work, outside) = setup();
    let store = MemoryStore::new();
    let declared = names(&["out1"]);
    let outside_s = outside.to_str().unwrap().to_owned();
    for target in [
        outside_s.as_str(),
        "/etc/passwd",
        "../../outside",
        "../..",
        "sub/../../..",
        "x/../../../outside",
    ] {
        let key = Key::new("links").unwrap();
        let e = stored(&store, &key, vec![dir("out1"), link("out1/l", target)]).await;
        let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
            .await
            .unwrap();
        assert_eq!(
            got,
            Restore::Poisoned {
                path: "out1/l".into(),
                reason: "is a symlink whose target leaves the build root"
            },
            "target {target}"
        );
        assert!(!work.join("out1").exists(), "target {target}: wrote out1");
        // Allowed by configuration, it is restored as it is.
        let opts = RestoreOptions::declared(&declared).allow_external_symlinks(true);
        let got = restore_outputs(&store, &e, &work, &opts).await.unwrap();
        assert_eq!(got, Restore::Restored, "target {target}");
        assert_eq!(
            fs::read_link(work.join("out1/l")).unwrap(),
            Path::new(target)
        );
        fs::remove_dir_all(work.join("out1")).unwrap();
    }
    // Inside the tree: up to the root, sideways, down.
    let key = Key::new("links-inside").unwrap();
    let e = stored(
        &store,
        &key,
        vec![
            dir("out1"),
            dir("out1/sub"),
            file("out1/sub/f", b"f", false),
            link("out1/up", "../src/main.c"),
            link("out1/root", ".."),
            link("out1/sub/sib", "../up"),
            link("out1/down", "sub/f"),
            link("out1/dot", "./sub/./f"),
        ],
    )
    .await;
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .unwrap();
    assert_eq!(got, Restore::Restored);
    assert_eq!(fs::read(work.join("out1/down")).unwrap(), b"f");
    assert_eq!(
        fs::read(work.join("out1/up")).unwrap(),
        fs::read(work.join("src/main.c")).unwrap()
    );
    // An executable bit survives the confined paths.
    let key = Key::new("exe").unwrap();
    let e = stored(
        &store,
        &key,
        vec![file("out1/run.sh", b"#!/bin/sh\n", true)],
    )
    .await;
    fs::remove_dir_all(work.join("out1")).unwrap();
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .unwrap();
    assert_eq!(got, Restore::Restored);
    let mode = fs::metadata(work.join("out1/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

/// A miss (a blob gone) leaves no directory it created and no temporary file behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_miss_leaves_the_tree_as_it_was() {
    let (_tmp, work, _outside) = setup();
    let before = listing(&work);
    let store = MemoryStore::new();
    let key = Key::new("miss").unwrap();
    let mut gone = blob_file(&store, "out1/a/b/gone.bin", 10_000).await;
    if let OutputKind::File { content, .. } = &mut gone.kind {
        content.digest = larder_core::Digest::of(b"not stored");
    }
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs = vec![
        file("out1/a/first", b"first", false),
        blob_file(&store, "out1/a/b/big.bin", 20_000).await,
        gone,
    ];
    let declared = names(&["out1"]);
    let got = restore_outputs(&store, &e, &work, &RestoreOptions::declared(&declared))
        .await
        .unwrap();
    assert_eq!(got, Restore::Missing);
    assert_eq!(listing(&work), before);
}

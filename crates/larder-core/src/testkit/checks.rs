//! The checks. Each takes the harness, uses fresh keys, and panics with a message naming what
//! broke. [`run_all`] runs every check the store's capabilities allow.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;

use super::Harness;
use crate::artifacts::{
    Restore, RestoreOptions, collect_outputs, restore_outputs, store_bytes, store_outputs,
    write_content,
};
use crate::digest::{Digest, DigestWriter, HashFn};
use crate::entry::{Content, Entry, Output, OutputKind};
use crate::error::ErrorKind;
use crate::key::Key;
use crate::store::{
    ByteStream, CHUNK_SIZE, GetOptions, Placement, PutOptions, PutOutcome, Store, StoreExt,
    VerifiedFile,
};

/// When a check applies to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Every store.
    Always,
    /// Stores whose capability includes `delete`.
    Delete,
    /// Stores whose capability includes `list`.
    List,
    /// Stores whose capability includes `hit_stats`.
    HitStats,
    /// Stores that talk to an endpoint ([`Harness::at_endpoint`] gives one).
    Remote,
    /// Stores whose capability includes `sha256` (SHA-256 blobs).
    Sha256,
    /// Stores whose capability does not include `sha256`.
    NoSha256,
}

/// A check of the suite, as a function pointer (see [`CHECKS`]).
pub type CheckFn = for<'a> fn(&'a dyn Harness) -> futures::future::LocalBoxFuture<'a, ()>;

macro_rules! checks {
    ($($gate:ident $check:ident),* $(,)?) => {
        /// Every check of the suite, in the order [`run_all`] runs them: name, when it applies,
        /// and the check. Backends' tests run them as separate trials through
        /// [`Suites`](super::Suites).
        pub const CHECKS: &[(&str, Gate, CheckFn)] = &[$(
            (stringify!($check), Gate::$gate, {
                fn boxed<'a>(h: &'a dyn Harness) -> futures::future::LocalBoxFuture<'a, ()> {
                    Box::pin($check(h))
                }
                boxed
            }),
        )*];
    };
}

checks!(
    Always round_trip_multi_output,
    Always missing_keys,
    Always find_missing_entries_answers_existence,
    Always empty_outputs,
    Always executable_bit_kept,
    Always output_directories,
    Always bad_keys_rejected,
    Always unsafe_entries_rejected,
    Always blob_must_match_digest,
    Always create_mode_keeps_existing,
    Always concurrent_writers_one_key,
    Always corrupted_blob_is_a_miss,
    Always corrupted_entry_is_a_miss,
    Always large_streamed_blob,
    Always put_blob_file_round_trip,
    Sha256 sha256_blob_round_trip,
    Sha256 sha256_blob_must_match_digest,
    Sha256 sha256_corrupted_blob_is_a_miss,
    NoSha256 sha256_refused_when_unsupported,
    Delete delete_removes_entry,
    List list_shows_entries,
    HitStats stats_count_hits_and_misses,
    Remote dead_endpoint_is_a_temporary_error,
    Remote hanging_endpoint_times_out,
);

/// Whether a check gated by `gate` applies to the harness's store.
pub fn applies(gate: Gate, h: &dyn Harness) -> bool {
    let cap = h.store().capability();
    match gate {
        Gate::Always => true,
        Gate::Delete => cap.delete,
        Gate::List => cap.list,
        Gate::HitStats => cap.hit_stats,
        Gate::Remote => h.at_endpoint(super::endpoints::refusing()).is_some(),
        Gate::Sha256 => cap.sha256,
        Gate::NoSha256 => !cap.sha256,
    }
}

/// Run every check that applies to the harness's store, in order, printing each name.
pub async fn run_all(h: &dyn Harness) {
    for (name, gate, check) in CHECKS {
        if !applies(*gate, h) {
            continue;
        }
        eprintln!("testkit: {name} ...");
        let started = std::time::Instant::now();
        check(h).await;
        eprintln!("testkit: {name} ok ({:.2?})", started.elapsed());
    }
}

/// `unwrap` for the suite: the panic names the error and points at the calling line.
trait Must<T> {
    fn must(self) -> T;
}

impl<T, E: std::fmt::Display> Must<T> for std::result::Result<T, E> {
    #[track_caller]
    fn must(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }
}

fn fresh_key(check: &str) -> Key {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = crate::statcache::now_ns();
    Key::new(format!(
        "testkit/{check}/{}-{nanos}-{n}",
        std::process::id()
    ))
    .unwrap_or_else(|e| panic!("testkit made a bad key: {e}"))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("testkit: cannot create a temp dir: {e}"))
}

/// Deterministic pseudo-random bytes (BLAKE3 in XOF mode: fast even in debug builds).
fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
    }
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
}

/// What a tree holds, for comparison: path → description.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}"))
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if rel.contains(".larder-") {
                panic!("a temporary file was left behind: {rel}");
            }
            let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {p:?}: {e}"));
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap_or_default();
                out.insert(rel, format!("link -> {}", t.display()));
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
                let x = m.permissions().mode() & 0o111 != 0;
                out.insert(
                    rel,
                    format!("file {} bytes {} x={x}", bytes.len(), Digest::of(&bytes)),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Store `names` from `src` under `key` the way `larder exec` does.
async fn put_tree(store: &dyn Store, key: &Key, src: &Path, names: &[&str]) -> Entry {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let collected = collect_outputs(src, &names, crate::entry::DEFAULT_INLINE_LIMIT)
        .unwrap_or_else(|e| panic!("collect_outputs: {e}"));
    let mut entry = Entry::new(key.as_str(), "testkit");
    entry.outputs = collected.outputs;
    entry.cost_ms = 42;
    store_outputs(store, key, &entry, &collected.blobs)
        .await
        .unwrap_or_else(|e| panic!("{store}: store_outputs: {e}"));
    entry
}

async fn get_tree(store: &dyn Store, key: &Key, dest: &Path) -> Option<Restore> {
    let entry = store
        .get_entry(key)
        .await
        .unwrap_or_else(|e| panic!("{store}: get_entry: {e}"))?;
    Some(
        restore_outputs(store, &entry, dest, &RestoreOptions::whole_entry())
            .await
            .unwrap_or_else(|e| panic!("{store}: restore_outputs: {e}")),
    )
}

/// Several outputs of every kind and size class survive a put and a get, with captured streams.
pub async fn round_trip_multi_output(h: &dyn Harness) {
    let store = h.store();
    let src = tempdir();
    write(src.path(), "small.txt", b"hello larder\n");
    write(src.path(), "obj/big.o", &pseudo_random("big", 300_000));
    write(src.path(), "obj/other.o", &pseudo_random("other", 70_000));
    // Same bytes twice: stored once, restored twice.
    write(src.path(), "copy.o", &pseudo_random("other", 70_000));
    let text = b"compressible line of build output\n".repeat(4000);
    write(src.path(), "log.txt", &text);
    let key = fresh_key("round_trip");
    let mut entry = put_tree(
        &*store,
        &key,
        src.path(),
        &["small.txt", "obj", "copy.o", "log.txt"],
    )
    .await;
    // Captured streams: one inline, one as a blob.
    entry.stdout = Some(store_bytes(&*store, b"out\n".to_vec(), 4096).await.must());
    let big_err = pseudo_random("stderr", 20_000);
    entry.stderr = Some(store_bytes(&*store, big_err.clone(), 4096).await.must());
    entry.exit_code = Some(0);
    store
        .put_entry(&key, &entry)
        .await
        .unwrap_or_else(|e| panic!("{store}: put_entry: {e}"));

    let got = store
        .get_entry(&key)
        .await
        .unwrap_or_else(|e| panic!("{store}: get_entry: {e}"))
        .unwrap_or_else(|| panic!("{store}: entry just written is missing"));
    assert_eq!(got, entry, "{store}: entry read back differs");
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(
        snapshot(src.path()),
        snapshot(dest.path()),
        "{store}: restored tree differs"
    );
    let mut out = Vec::new();
    assert!(
        write_content(
            &*store,
            entry.stderr.as_ref().unwrap_or_else(|| unreachable!()),
            &mut out
        )
        .await
        .must()
    );
    assert_eq!(out, big_err, "{store}: captured stderr differs");
    // Restoring over an existing tree replaces files.
    write(dest.path(), "small.txt", b"stale");
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(
        std::fs::read(dest.path().join("small.txt")).ok().as_deref(),
        Some(&b"hello larder\n"[..])
    );
}

/// Unknown keys and blobs are misses, never errors, and change nothing.
pub async fn missing_keys(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("missing");
    assert!(
        store
            .get_entry(&key)
            .await
            .unwrap_or_else(|e| panic!("{store}: get_entry of a missing key errs: {e}"))
            .is_none()
    );
    let d = Digest::of(b"never stored by anyone: testkit missing_keys");
    assert!(store.get_blob(&d).await.must().is_none());
    let dir = tempdir();
    let dest = dir.path().join("dest");
    assert!(!store.place_blob(&d, &dest, Placement::Copy).await.must());
    assert!(
        !dest.exists(),
        "{store}: place_blob of a missing blob created the file"
    );
    assert_eq!(store.find_missing(&[d]).await.must(), vec![d]);
    if store.capability().delete {
        assert!(!store.delete(&key).await.must());
    }
}

/// The bulk existence check: present entries (inline and blob-backed) are present, unknown
/// and deleted ones missing, in the order asked, and asking does not change what a read finds.
pub async fn find_missing_entries_answers_existence(h: &dyn Harness) {
    let store = h.store();
    let src = tempdir();
    write(src.path(), "small", b"inline bytes");
    write(
        src.path(),
        "big",
        &pseudo_random("find_missing_entries", 300 << 10),
    );
    let inline = fresh_key("exists-inline");
    put_tree(&*store, &inline, src.path(), &["small"]).await;
    let with_blob = fresh_key("exists-blob");
    put_tree(&*store, &with_blob, src.path(), &["big", "small"]).await;
    let unknown = fresh_key("exists-unknown");
    let asked = [
        unknown.clone(),
        inline.clone(),
        with_blob.clone(),
        unknown.clone(),
    ];
    assert_eq!(
        store.find_missing_entries(&asked).await.must(),
        vec![unknown.clone(), unknown.clone()],
        "{store}: find_missing_entries"
    );
    assert!(store.find_missing_entries(&[]).await.must().is_empty());
    assert!(
        store.get_entry(&with_blob).await.must().is_some(),
        "{store}: an entry asked about is still readable"
    );
    if store.capability().delete {
        assert!(store.delete(&inline).await.must());
        assert_eq!(
            store
                .find_missing_entries(&[inline.clone(), with_blob.clone()])
                .await
                .must(),
            vec![inline],
            "{store}: a deleted entry is missing"
        );
    }
}

/// An entry with no outputs (stdout only), and an empty output file.
pub async fn empty_outputs(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("empty");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.stdout = Some(Content::inline(b"only output\n".to_vec()));
    e.exit_code = Some(0);
    store
        .put_entry(&key, &e)
        .await
        .unwrap_or_else(|err| panic!("{store}: {err}"));
    assert_eq!(store.get_entry(&key).await.must(), Some(e));

    let src = tempdir();
    write(src.path(), "empty.out", b"");
    let key = fresh_key("empty_file");
    put_tree(&*store, &key, src.path(), &["empty.out"]).await;
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(
        std::fs::metadata(dest.path().join("empty.out"))
            .map(|m| m.len())
            .ok(),
        Some(0)
    );
    // The empty blob itself, stored explicitly, round-trips too.
    let d = store
        .put_blob_bytes(Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{store}: empty blob: {e}"));
    assert_eq!(store.get_blob_bytes(&d, 10).await.must(), Some(vec![]));
}

/// The executable bit survives, for inline and blob outputs.
pub async fn executable_bit_kept(h: &dyn Harness) {
    let store = h.store();
    let src = tempdir();
    write(src.path(), "run.sh", b"#!/bin/sh\necho hi\n");
    write(src.path(), "tool", &pseudo_random("tool", 50_000));
    write(src.path(), "data", &pseudo_random("data", 50_000));
    for f in ["run.sh", "tool"] {
        std::fs::set_permissions(src.path().join(f), std::fs::Permissions::from_mode(0o755)).must();
    }
    let key = fresh_key("exec_bit");
    put_tree(&*store, &key, src.path(), &["run.sh", "tool", "data"]).await;
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    let mode = |f: &str| {
        std::fs::metadata(dest.path().join(f))
            .map(|m| m.permissions().mode() & 0o111)
            .unwrap_or(0)
    };
    assert_ne!(
        mode("run.sh"),
        0,
        "{store}: inline executable lost its x bit"
    );
    assert_ne!(mode("tool"), 0, "{store}: blob executable lost its x bit");
    assert_eq!(mode("data"), 0, "{store}: data file became executable");
}

/// Directory outputs: nested files, empty directories, symlinks inside.
pub async fn output_directories(h: &dyn Harness) {
    let store = h.store();
    let src = tempdir();
    write(src.path(), "out/a/b/c.txt", b"deep");
    write(
        src.path(),
        "out/a/big.bin",
        &pseudo_random("dirbig", 10_000),
    );
    std::fs::create_dir_all(src.path().join("out/empty/inner")).must();
    std::os::unix::fs::symlink("a/b/c.txt", src.path().join("out/link")).must();
    let key = fresh_key("dirs");
    put_tree(&*store, &key, src.path(), &["out"]).await;
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(
        snapshot(src.path()),
        snapshot(dest.path()),
        "{store}: directory output differs"
    );
}

/// Keys with `..`, absolute paths, NUL bytes or too many bytes never reach a store.
pub async fn bad_keys_rejected(_h: &dyn Harness) {
    for bad in [
        "../x",
        "a/../../etc/passwd",
        "/etc/passwd",
        "a\0b",
        "",
        "a//b",
    ] {
        let err = Key::new(bad)
            .err()
            .unwrap_or_else(|| panic!("key {bad:?} was accepted"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(Key::new("k".repeat(crate::key::MAX_KEY_LEN + 1)).is_err());
    assert!(Key::new("k".repeat(crate::key::MAX_KEY_LEN)).is_ok());
}

fn file_output(path: &str, bytes: &[u8]) -> Output {
    Output {
        path: path.into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    }
}

/// Entries naming unsafe output paths are refused on write, and never written on restore.
pub async fn unsafe_entries_rejected(h: &dyn Harness) {
    let store = h.store();
    let root = tempdir();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).must();
    for bad in [
        "../escape",
        "/tmp/larder-testkit-abs",
        "a/../../escape",
        "nul\0",
    ] {
        let key = fresh_key("unsafe");
        let mut e = Entry::new(key.as_str(), "testkit");
        e.outputs.push(file_output(bad, b"pwned"));
        let res = store.put_entry(&key, &e).await;
        assert!(
            res.is_err(),
            "{store}: accepted an entry with output {bad:?}"
        );
        assert!(store.get_entry(&key).await.must().is_none());
        // A hostile entry that reached us some other way is refused before writing anything.
        let res = restore_outputs(&*store, &e, &work, &RestoreOptions::whole_entry()).await;
        assert!(res.is_err(), "restore accepted output {bad:?}");
    }
    assert!(
        !root.path().join("escape").exists(),
        "an unsafe path escaped the work dir"
    );
    // Writing through a symlink output is refused.
    let key = fresh_key("unsafe_link");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.outputs.push(Output {
        path: "l".into(),
        kind: OutputKind::Symlink {
            target: "..".into(),
        },
    });
    e.outputs.push(file_output("l/escape", b"pwned"));
    assert!(store.put_entry(&key, &e).await.is_err());
    assert!(
        restore_outputs(&*store, &e, &work, &RestoreOptions::whole_entry())
            .await
            .is_err()
    );
    assert!(
        !root.path().join("escape").exists(),
        "wrote through a symlink output"
    );
}

fn chunked(bytes: Vec<u8>) -> ByteStream {
    let chunks: Vec<crate::Result<Bytes>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// A blob whose bytes do not match its digest or size is refused and never visible.
pub async fn blob_must_match_digest(h: &dyn Harness) {
    let store = h.store();
    let good = pseudo_random("digest-check", 200_000);
    let claimed = Digest::of(b"testkit: something else entirely");
    let res = store
        .put_blob(&claimed, good.len() as u64, chunked(good.clone()))
        .await;
    assert!(
        res.is_err(),
        "{store}: accepted a blob under the wrong digest"
    );
    assert_eq!(store.find_missing(&[claimed]).await.must(), vec![claimed]);
    let right = Digest::of(&good);
    let res = store
        .put_blob(&right, good.len() as u64 + 1, chunked(good.clone()))
        .await;
    assert!(res.is_err(), "{store}: accepted a blob of the wrong size");
    assert_eq!(store.find_missing(&[right]).await.must(), vec![right]);
    let outcome = store
        .put_blob(&right, good.len() as u64, chunked(good.clone()))
        .await
        .must();
    assert_eq!(outcome, PutOutcome::Written);
    assert!(store.find_missing(&[right]).await.must().is_empty());
    assert_eq!(
        store.get_blob_bytes(&right, 1 << 20).await.must(),
        Some(good)
    );
}

/// A local file already verified as a blob is stored as that blob, whether the store takes
/// the file or reads it: it reads back whole (BLAKE3, and SHA-256 where the store holds such
/// blobs, small and in several chunks), and putting it again finds it there.
pub async fn put_blob_file_round_trip(h: &dyn Harness) {
    let store = h.store();
    let dir = tempdir();
    let mut funcs = vec![HashFn::Blake3];
    if store.capability().sha256 {
        funcs.push(HashFn::Sha256);
    }
    for func in funcs {
        for len in [5_000usize, 2 * CHUNK_SIZE + 17] {
            let bytes = pseudo_random(&format!("put-blob-file-{func:?}-{len}"), len);
            let d = func.digest(&bytes);
            let path = dir.path().join(format!("upload-{func:?}-{len}"));
            for first in [true, false] {
                std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
                let outcome = store
                    .put_blob_file(&d, VerifiedFile::new(&path, len as u64))
                    .await
                    .must();
                // A second put may find the blob there or write it again (as `put_blob`).
                assert!(
                    outcome == PutOutcome::Written || !first,
                    "{store}: put_blob_file of a new blob {d}: {outcome:?}"
                );
            }
            assert!(store.find_missing(&[d]).await.must().is_empty());
            let got = store.get_blob_bytes(&d, len as u64).await.must();
            assert!(
                got.as_deref() == Some(&bytes[..]),
                "{store}: blob {d} stored from a file read back different"
            );
        }
    }
}

/// A SHA-256 blob is stored under its own digest: found, read back verified (a large one in
/// several chunks too), and distinct from the BLAKE3 digest with the same 32 bytes.
pub async fn sha256_blob_round_trip(h: &dyn Harness) {
    let store = h.store();
    for len in [1_000usize, 3 * CHUNK_SIZE + 17] {
        let bytes = pseudo_random(&format!("sha256-round-trip-{len}"), len);
        let d = HashFn::Sha256.digest(&bytes);
        assert_eq!(d.func(), HashFn::Sha256);
        let alias = Digest::blake3(*d.as_bytes());
        assert_eq!(store.find_missing(&[d]).await.must(), vec![d]);
        let outcome = store
            .put_blob(&d, len as u64, chunked(bytes.clone()))
            .await
            .must();
        assert_eq!(outcome, PutOutcome::Written, "{store}: {d}");
        assert_eq!(
            store.find_missing(&[d, alias]).await.must(),
            vec![alias],
            "{store}: a SHA-256 blob is not its bytes' BLAKE3 namesake"
        );
        let read = store
            .get_blob(&d)
            .await
            .must()
            .unwrap_or_else(|| panic!("{store}: SHA-256 blob {d} not found"));
        assert_eq!(read.size, len as u64);
        let mut got = Vec::with_capacity(len);
        let mut s = read.stream;
        while let Some(chunk) = s.next().await {
            got.extend_from_slice(&chunk.must());
        }
        assert!(
            got == bytes,
            "{store}: SHA-256 blob {d} read back different"
        );
        assert!(store.get_blob(&alias).await.must().is_none());
        let again = store
            .put_blob(&d, len as u64, chunked(bytes.clone()))
            .await
            .must();
        assert_eq!(again, PutOutcome::Exists, "{store}: {d} written twice");
    }
}

/// A SHA-256 blob whose bytes do not hash to it (or have another size) is refused and never
/// visible, even when they are the BLAKE3 of that digest.
pub async fn sha256_blob_must_match_digest(h: &dyn Harness) {
    let store = h.store();
    let good = pseudo_random("sha256-digest-check", 200_000);
    for claimed in [
        HashFn::Sha256.digest(b"testkit: something else"),
        Digest::sha256(*Digest::of(&good).as_bytes()),
    ] {
        let res = store
            .put_blob(&claimed, good.len() as u64, chunked(good.clone()))
            .await;
        assert!(res.is_err(), "{store}: accepted a blob under {claimed}");
        assert_eq!(store.find_missing(&[claimed]).await.must(), vec![claimed]);
    }
    let right = HashFn::Sha256.digest(&good);
    let res = store
        .put_blob(&right, good.len() as u64 - 1, chunked(good.clone()))
        .await;
    assert!(
        res.is_err(),
        "{store}: accepted a SHA-256 blob of the wrong size"
    );
    assert_eq!(store.find_missing(&[right]).await.must(), vec![right]);
    store
        .put_blob(&right, good.len() as u64, chunked(good.clone()))
        .await
        .must();
    assert_eq!(
        store.get_blob_bytes(&right, 1 << 20).await.must(),
        Some(good)
    );
}

/// A SHA-256 blob damaged where it is stored never reads back whole and cleanly, and is then
/// missing; storing it again heals it.
pub async fn sha256_corrupted_blob_is_a_miss(h: &dyn Harness) {
    let store = h.store();
    let bytes = pseudo_random("sha256-corrupt-me", 300_000);
    let d = HashFn::Sha256.digest(&bytes);
    store
        .put_blob(&d, bytes.len() as u64, chunked(bytes.clone()))
        .await
        .must();
    if !h.corrupt_blob(&d).await {
        eprintln!("testkit: {store} cannot corrupt blobs; skipping");
        return;
    }
    if let Some(read) = store.get_blob(&d).await.must() {
        let mut s = read.stream;
        let mut failed = false;
        while let Some(item) = s.next().await {
            if let Err(e) = item {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "{store}: {e}");
                failed = true;
                break;
            }
        }
        assert!(
            failed,
            "{store}: a corrupt SHA-256 blob streamed without error"
        );
    }
    assert_eq!(
        store.find_missing(&[d]).await.must(),
        vec![d],
        "{store}: the corrupt SHA-256 blob was kept"
    );
    store
        .put_blob(&d, bytes.len() as u64, chunked(bytes.clone()))
        .await
        .must();
    assert_eq!(store.get_blob_bytes(&d, 1 << 20).await.must(), Some(bytes));
}

/// A store that cannot hold SHA-256 blobs says so ([`crate::Error::NotSupported`]) in every
/// blob method, and stores nothing under that digest's bytes.
pub async fn sha256_refused_when_unsupported(h: &dyn Harness) {
    let store = h.store();
    let bytes = pseudo_random("sha256-refused", 5_000);
    let d = HashFn::Sha256.digest(&bytes);
    let unsupported = |what: &str, e: crate::Error| {
        assert!(
            matches!(e, crate::Error::NotSupported { .. }),
            "{store}: {what} of a SHA-256 blob: {e}"
        );
    };
    match store
        .put_blob(&d, bytes.len() as u64, chunked(bytes.clone()))
        .await
    {
        Ok(o) => panic!("{store}: stored a SHA-256 blob it cannot hold ({o:?})"),
        Err(e) => unsupported("put_blob", e),
    }
    match store.get_blob(&d).await {
        Ok(r) => panic!("{store}: get_blob of a SHA-256 digest answered {r:?}"),
        Err(e) => unsupported("get_blob", e),
    }
    match store.find_missing(&[Digest::of(&bytes), d]).await {
        Ok(m) => panic!("{store}: find_missing of a SHA-256 digest answered {m:?}"),
        Err(e) => unsupported("find_missing", e),
    }
    let alias = Digest::blake3(*d.as_bytes());
    assert_eq!(store.find_missing(&[alias]).await.must(), vec![alias]);
}

/// `PutMode::Create` keeps the first entry.
pub async fn create_mode_keeps_existing(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("create");
    let mut first = Entry::new(key.as_str(), "testkit");
    first.outputs.push(file_output("f", b"first"));
    let mut second = first.clone();
    second.outputs[0] = file_output("f", b"second");
    assert_eq!(
        store
            .put_entry_opts(&key, &first, PutOptions::create())
            .await
            .must(),
        PutOutcome::Written
    );
    assert_eq!(
        store
            .put_entry_opts(&key, &second, PutOptions::create())
            .await
            .must(),
        PutOutcome::Exists
    );
    assert_eq!(store.get_entry(&key).await.must(), Some(first));
    store.put_entry(&key, &second).await.must();
    assert_eq!(store.get_entry(&key).await.must(), Some(second));
}

/// Eight writers racing on one key (and on shared blobs) leave one complete entry.
pub async fn concurrent_writers_one_key(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("race");
    let shared = pseudo_random("race-shared", 400_000);
    let mut tasks = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..8).map(|_| tempdir()).collect();
    for (i, dir) in dirs.iter().enumerate() {
        write(dir.path(), "shared.bin", &shared);
        write(
            dir.path(),
            "own.bin",
            &pseudo_random(&format!("race-own-{i}"), 100_000 + i),
        );
        write(dir.path(), "id.txt", format!("writer {i}\n").as_bytes());
        let (store, key, path) = (Arc::clone(&store), key.clone(), dir.path().to_path_buf());
        tasks.push(tokio::spawn(async move {
            put_tree(&*store, &key, &path, &["shared.bin", "own.bin", "id.txt"]).await
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(
            t.await
                .unwrap_or_else(|e| panic!("writer task failed: {e}")),
        );
    }
    let got = store
        .get_entry(&key)
        .await
        .must()
        .unwrap_or_else(|| panic!("{store}: no entry after 8 writers"));
    let winner = written
        .iter()
        .position(|e| e.outputs == got.outputs)
        .unwrap_or_else(|| panic!("{store}: entry after the race matches no writer"));
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(
        snapshot(dest.path()),
        snapshot(dirs[winner].path()),
        "{store}: restored outputs mix writers"
    );
}

/// A blob whose stored bytes are damaged is never returned: restoring is a miss, the work tree
/// is untouched, and the bad blob is removed.
pub async fn corrupted_blob_is_a_miss(h: &dyn Harness) {
    let store = h.store();
    let src = tempdir();
    let bytes = pseudo_random("corrupt-me", 300_000);
    write(src.path(), "sub/dir/victim.bin", &bytes);
    write(src.path(), "sub/ok.txt", b"fine");
    let key = fresh_key("corrupt_blob");
    let entry = put_tree(&*store, &key, src.path(), &["sub"]).await;
    let d = entry.blob_digests()[0];
    if !h.corrupt_blob(&d).await {
        eprintln!("testkit: {store} cannot corrupt blobs; skipping");
        return;
    }
    let dest = tempdir();
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Missing),
        "{store}: corrupt blob restored"
    );
    assert!(
        snapshot(dest.path()).is_empty(),
        "{store}: a miss left files behind"
    );
    // Streaming it never ends cleanly.
    if let Some(read) = store.get_blob(&d).await.must() {
        let mut s = read.stream;
        let mut hasher = DigestWriter::new();
        let mut failed = false;
        while let Some(item) = s.next().await {
            match item {
                Ok(c) => hasher.update(&c),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Corrupt, "{store}: {e}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "{store}: a corrupt blob streamed without error");
    }
    assert_eq!(
        store.find_missing(&[d]).await.must(),
        vec![d],
        "{store}: the corrupt blob was kept"
    );
    // Storing it again heals the entry.
    put_tree(&*store, &key, src.path(), &["sub"]).await;
    assert_eq!(
        get_tree(&*store, &key, dest.path()).await,
        Some(Restore::Restored)
    );
    assert_eq!(snapshot(src.path()), snapshot(dest.path()));
}

/// An entry whose stored document is damaged reads as a miss, not an error.
pub async fn corrupted_entry_is_a_miss(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("corrupt_entry");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.outputs.push(file_output("f", b"x"));
    store.put_entry(&key, &e).await.must();
    if !h.corrupt_entry(&key).await {
        eprintln!("testkit: {store} cannot corrupt entries; skipping");
        return;
    }
    let got = store
        .get_entry(&key)
        .await
        .unwrap_or_else(|err| panic!("{store}: a corrupt entry is an error, not a miss: {err}"));
    assert!(got.is_none(), "{store}: a corrupt entry was returned");
}

fn current_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A stream of `len` pseudo-random bytes in [`CHUNK_SIZE`] chunks, generated on the fly.
fn generated_stream(seed: &'static str, len: u64, peak_rss: Arc<AtomicU64>) -> ByteStream {
    let reader = blake3::Hasher::new_derive_key(seed).finalize_xof();
    let s = futures::stream::unfold((reader, 0u64), move |(mut reader, done)| {
        let peak_rss = Arc::clone(&peak_rss);
        async move {
            if done >= len {
                return None;
            }
            let n = (len - done).min(CHUNK_SIZE as u64) as usize;
            let mut buf = vec![0u8; n];
            reader.fill(&mut buf);
            if let Some(rss) = current_rss_bytes() {
                peak_rss.fetch_max(rss, Ordering::Relaxed);
            }
            Some((Ok(Bytes::from(buf)), (reader, done + n as u64)))
        }
    });
    Box::pin(s)
}

/// A large blob (1 GiB by default) streams in and out with memory bounded well below its size.
pub async fn large_streamed_blob(h: &dyn Harness) {
    let store = h.store();
    let len = h.large_blob_bytes();
    let seed = "larder testkit large blob";
    let mut hasher = DigestWriter::new();
    {
        let mut reader = blake3::Hasher::new_derive_key(seed).finalize_xof();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK_SIZE as u64) as usize;
            reader.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            done += n as u64;
        }
    }
    let digest = hasher.finish();
    let baseline = current_rss_bytes().unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(baseline));
    store
        .put_blob(&digest, len, generated_stream(seed, len, Arc::clone(&peak)))
        .await
        .unwrap_or_else(|e| panic!("{store}: put of a {len}-byte blob: {e}"));
    let read = store
        .get_blob(&digest)
        .await
        .must()
        .unwrap_or_else(|| panic!("{store}: large blob missing after put"));
    assert_eq!(read.size, len);
    let mut s = read.stream;
    let mut check = DigestWriter::new();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{store}: reading the large blob: {e}"));
        check.update(&chunk);
        n += 1;
        if n.is_multiple_of(16)
            && let Some(rss) = current_rss_bytes()
        {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
    }
    assert_eq!(
        check.finish(),
        digest,
        "{store}: large blob read back differs"
    );
    let dir = tempdir();
    let dest = dir.path().join("large");
    assert!(
        store
            .place_blob(&digest, &dest, Placement::Copy)
            .await
            .must()
    );
    if let Some(rss) = current_rss_bytes() {
        peak.fetch_max(rss, Ordering::Relaxed);
    }
    assert_eq!(Digest::of_file(&dest).must(), (digest, len));
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "testkit: {store}: {len}-byte blob, resident memory grew by at most {} MiB",
        grew >> 20
    );
    // Other tests may run in this process at the same time; the bound leaves room for them but
    // would catch any store that buffers a whole blob of 1 GiB.
    let bound = (len / 4).max(256 << 20);
    assert!(
        grew < bound,
        "{store}: memory grew by {grew} bytes streaming a {len}-byte blob"
    );
}

/// Deleting an entry makes it a miss.
pub async fn delete_removes_entry(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("delete");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.outputs.push(file_output("f", b"x"));
    store.put_entry(&key, &e).await.must();
    assert!(store.delete(&key).await.must());
    assert!(store.get_entry(&key).await.must().is_none());
    assert!(!store.delete(&key).await.must());
}

/// Listing shows stored entries by storage name.
pub async fn list_shows_entries(h: &dyn Harness) {
    let store = h.store();
    let key = fresh_key("list");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.outputs.push(file_output("f", b"listed"));
    e.cost_ms = 7;
    store.put_entry(&key, &e).await.must();
    store.flush().await.must();
    let name = key.storage_name();
    let mut found = None;
    let mut s = store.list();
    while let Some(m) = s.next().await {
        let m = m.unwrap_or_else(|err| panic!("{store}: list: {err}"));
        if m.name == name {
            found = Some(m);
        }
    }
    let m = found.unwrap_or_else(|| panic!("{store}: listing misses a stored entry"));
    assert_eq!(m.cost_ms, 7);
    assert!(m.size > 0);
}

/// Hits and misses are counted.
pub async fn stats_count_hits_and_misses(h: &dyn Harness) {
    let store = h.store();
    store.flush().await.must();
    let before = store.stats().await.must();
    let key = fresh_key("stats");
    let mut e = Entry::new(key.as_str(), "testkit");
    e.outputs.push(file_output("f", b"counted"));
    e.cost_ms = 1000;
    store.put_entry(&key, &e).await.must();
    for _ in 0..3 {
        assert!(store.get_entry(&key).await.must().is_some());
    }
    let quiet = store
        .get_entry_opts(
            &key,
            GetOptions {
                record_access: false,
            },
        )
        .await
        .must();
    assert!(quiet.is_some());
    assert!(
        store
            .get_entry(&fresh_key("stats_miss"))
            .await
            .must()
            .is_none()
    );
    store.flush().await.must();
    let after = store.stats().await.must();
    assert_eq!(after.hits - before.hits, 3, "{store}: hits");
    assert_eq!(after.misses - before.misses, 1, "{store}: misses");
    assert_eq!(after.ms_saved - before.ms_saved, 3000, "{store}: ms saved");
    assert!(after.entries > before.entries, "{store}: entries");
}

/// The longest a call to a dead or silent endpoint may take: the backend's time-out (a few
/// seconds, set by [`Harness::at_endpoint`]) plus room for a loaded machine.
const ENDPOINT_BOUND: std::time::Duration = std::time::Duration::from_secs(15);

/// Time `call`, and check it failed with a temporary error (one a retry may cure, which is what
/// the best-effort and retry layers act on) within [`ENDPOINT_BOUND`].
async fn must_fail_temporarily<T: std::fmt::Debug>(
    store: &dyn Store,
    what: &str,
    call: impl std::future::Future<Output = crate::Result<T>>,
) {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(ENDPOINT_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{store}: {what} did not give up within {ENDPOINT_BOUND:?}"));
    match result {
        Ok(v) => panic!("{store}: {what} succeeded against a broken endpoint: {v:?}"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Temporary,
            "{store}: {what} failed with {e} ({:?}), not as a temporary error",
            e.kind()
        ),
    }
    eprintln!(
        "testkit: {store}: {what} failed in {:.2?}",
        started.elapsed()
    );
}

/// The calls a build makes first, against `store`: each must fail as a temporary error.
async fn broken_endpoint_calls(store: &dyn Store, label: &str) {
    let key = fresh_key(label);
    must_fail_temporarily(store, "get_entry", store.get_entry(&key)).await;
    let digest = Digest::of(b"larder testkit endpoint");
    must_fail_temporarily(store, "find_missing", store.find_missing(&[digest])).await;
    let entry = Entry::new(key.as_str(), "testkit");
    must_fail_temporarily(store, "put_entry", store.put_entry(&key, &entry)).await;
}

/// Nothing listens at the endpoint: every call fails at once as a temporary error (so the
/// best-effort layer makes it a miss and a warning), never as a miss or a hang.
pub async fn dead_endpoint_is_a_temporary_error(h: &dyn Harness) {
    let store = h
        .at_endpoint(super::endpoints::refusing())
        .unwrap_or_else(|| panic!("the harness gave no store for an endpoint"));
    broken_endpoint_calls(&*store, "dead_endpoint").await;
}

/// The endpoint accepts connections and never answers: every call gives up within the
/// backend's time-out, as a temporary error.
pub async fn hanging_endpoint_times_out(h: &dyn Harness) {
    let store = h
        .at_endpoint(super::endpoints::silent())
        .unwrap_or_else(|| panic!("the harness gave no store for an endpoint"));
    broken_endpoint_calls(&*store, "hanging_endpoint").await;
}

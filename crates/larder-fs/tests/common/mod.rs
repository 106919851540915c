//! Helpers shared by the filesystem store's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub mod restore_cases;

use larder_core::{Content, Digest, Entry, Key, Output, OutputKind, StoreExt};
use larder_fs::{FsConfig, FsStore};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn temp_store(config: FsConfig) -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsStore::open(dir.path().join("cache"), config).expect("open store");
    (dir, store)
}

/// A key with a readable name.
pub fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

/// Deterministic incompressible bytes.
pub fn random_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// An entry with one inline output.
pub fn inline_entry(key: &Key, bytes: &[u8]) -> Entry {
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs.push(Output {
        path: "out".into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    });
    e
}

/// Store `bytes` as a blob and an entry naming it under `key`.
pub async fn put_blob_entry(store: &FsStore, key: &Key, bytes: &[u8]) -> (Entry, Digest) {
    let d = store
        .put_blob_bytes(bytes::Bytes::copy_from_slice(bytes))
        .await
        .expect("put blob");
    let mut e = Entry::new(key.as_str(), "test");
    e.outputs.push(Output {
        path: "out".into(),
        kind: OutputKind::File {
            content: Content::blob(d, bytes.len() as u64),
            executable: false,
        },
    });
    store.put_entry(key, &e).await.expect("put entry");
    (e, d)
}

/// Where a blob is stored, raw or compressed (whichever exists).
pub fn blob_file(root: &Path, d: &Digest) -> Option<PathBuf> {
    let hex = d.to_hex();
    let top = match d.func() {
        larder_core::HashFn::Blake3 => "blobs",
        larder_core::HashFn::Sha256 => "sha256",
    };
    let dir = root.join(top).join(&hex[..2]);
    [dir.join(&hex), dir.join(format!("{hex}.zst"))]
        .into_iter()
        .find(|p| p.exists())
}

/// Where the entry under `key` is stored.
pub fn entry_file(root: &Path, key: &Key) -> PathBuf {
    let name = key.storage_name();
    root.join("entries").join(&name[..2]).join(name)
}

/// Set every stored blob's modification time `age` into the past (out of trims' grace windows).
pub fn age_blobs(root: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    for sub in std::fs::read_dir(root.join("blobs"))
        .expect("blobs dir")
        .flatten()
    {
        for f in std::fs::read_dir(sub.path())
            .expect("fan-out dir")
            .flatten()
        {
            let file = std::fs::File::open(f.path()).expect("open blob");
            file.set_modified(when).expect("set mtime");
        }
    }
}

/// Number of files under `dir` (recursively).
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

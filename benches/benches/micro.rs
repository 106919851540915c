//! Criterion micro-benchmarks of the hot paths: signing a task from the stat cache, entry
//! encoding and decoding, and fs put/get of a 1 KiB entry.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use larder_core::normalize::BaseDirs;
use larder_core::signature::{InputHasher, SignatureBuilder};
use larder_core::statcache::{StatCache, now_ns};
use larder_core::{Content, Entry, Key, Output, OutputKind, Store, StoreExt};
use larder_fs::{FsConfig, FsStore};

fn sample_entry(i: usize) -> Entry {
    let mut e = Entry::new(format!("k{i}"), "bench");
    e.outputs.push(Output {
        path: "build/obj/file.o".into(),
        kind: OutputKind::File {
            content: Content::inline(vec![(i % 251) as u8; 1024]),
            executable: false,
        },
    });
    e.stdout = Some(Content::inline(b"compiling file.c\n".to_vec()));
    e.exit_code = Some(0);
    e
}

fn signature(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<_> = (0..100)
        .map(|i| {
            let p = dir.path().join(format!("src{i}.c"));
            std::fs::write(&p, format!("int f{i}(void) {{ return {i}; }}\n").repeat(50))
                .unwrap_or_else(|e| panic!("{e}"));
            p
        })
        .collect();
    let hasher = InputHasher::new(StatCache::in_memory());
    // Record digests as if hashed long ago, so the stat cache trusts them.
    for f in &files {
        let m = std::fs::metadata(f).unwrap_or_else(|e| panic!("{e}"));
        let stamp = larder_core::statcache::FileStamp::from_metadata(&m);
        let d = larder_core::Digest::of_file(f)
            .unwrap_or_else(|e| panic!("{e}"))
            .0;
        hasher.cache().insert(&stamp, d, now_ns() + 10_000_000_000);
    }
    let norm = BaseDirs::new([dir.path().to_string_lossy().as_ref()]);
    c.bench_function("sign task with 100 inputs (stat cache warm)", |b| {
        b.iter(|| {
            let digests = hasher.hash_files(&files).unwrap_or_else(|e| panic!("{e}"));
            let mut s = SignatureBuilder::new("exec", &norm);
            for a in ["cc", "-O2", "-c", "src0.c"] {
                s.arg(a).unwrap_or_else(|e| panic!("{e}"));
            }
            for (f, d) in files.iter().zip(&digests) {
                s.input(&f.to_string_lossy(), d)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            s.finish()
        })
    });
}

fn entry_codec(c: &mut Criterion) {
    let e = sample_entry(1);
    let bytes = e.encode().unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("entry encode (1 KiB inline)", |b| b.iter(|| e.encode()));
    c.bench_function("entry decode (1 KiB inline)", |b| {
        b.iter(|| Entry::decode(&bytes))
    });
}

fn fs_small(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn Store> =
        Arc::new(FsStore::open(dir.path(), FsConfig::default()).unwrap_or_else(|e| panic!("{e}")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut i = 0usize;
    c.bench_function("fs put 1 KiB entry", |b| {
        b.iter(|| {
            i += 1;
            let k = Key::new(format!("k{}", i % 5000)).unwrap_or_else(|e| panic!("{e}"));
            rt.block_on(store.put_entry(&k, &sample_entry(i)))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let k = Key::new("k1").unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(store.put_entry(&k, &sample_entry(1)))
        .unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("fs get 1 KiB entry", |b| {
        b.iter(|| {
            rt.block_on(store.get_entry(&k))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    rt.block_on(store.flush()).unwrap_or_else(|e| panic!("{e}"));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = signature, entry_codec, fs_small
}
criterion_main!(benches);

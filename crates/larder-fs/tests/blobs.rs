//! Blob storage specifics: compression, placement, verification, limits.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use larder_core::{
    Digest, ErrorKind, HashFn, Placement, PutOutcome, Store, StoreExt, VerifiedFile,
};
use larder_fs::{Compression, FsConfig};

fn chunked(bytes: &[u8], chunk: usize) -> larder_core::ByteStream {
    let chunks: Vec<larder_core::Result<Bytes>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_compression_stores_text_compressed_and_random_raw() {
    let (_dir, store) = temp_store(FsConfig::default());
    // 3 MiB: large enough to go through the streaming writer and past the 1 MiB sample.
    let text = b"cc -O2 -c src/larder/some_file.c -o build/some_file.o\n".repeat(60_000);
    let random = random_bytes("auto-raw", 3 << 20);
    // Within the sample (written as the sample's own frame), and exactly the sample's size.
    let small_text = text[..200_000].to_vec();
    let sample_text = text[..1 << 20].to_vec();
    for (bytes, compressed) in [
        (&text, true),
        (&random, false),
        (&small_text, true),
        (&sample_text, true),
    ] {
        let d = Digest::of(bytes);
        let out = store
            .put_blob(&d, bytes.len() as u64, chunked(bytes, 100_000))
            .await
            .unwrap();
        assert_eq!(out, PutOutcome::Written);
        let file = blob_file(store.root(), &d).unwrap();
        assert_eq!(
            file.to_string_lossy().ends_with(".zst"),
            compressed,
            "{}",
            file.display()
        );
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        if compressed {
            assert!(meta.len() < bytes.len() as u64 / 4);
        }
        let back = store.get_blob_bytes(&d, 1 << 30).await.unwrap().unwrap();
        assert!(back == *bytes, "read back differs");
        let dest = _dir.path().join(format!("placed-{compressed}"));
        assert!(store.place_blob(&d, &dest, Placement::Copy).await.unwrap());
        assert_eq!(Digest::of_file(&dest).unwrap(), (d, bytes.len() as u64));
        // A second put of the same blob is a no-op.
        let again = store
            .put_blob(&d, bytes.len() as u64, chunked(bytes, 1 << 20))
            .await
            .unwrap();
        assert_eq!(again, PutOutcome::Exists);
    }
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_off_and_fixed_level() {
    let text = b"0123456789abcdef".repeat(10_000);
    let d = Digest::of(&text);
    let (_a, off) = temp_store(FsConfig::default().with_compression(Compression::Off));
    off.put_blob_bytes(Bytes::from(text.clone())).await.unwrap();
    assert!(
        !blob_file(off.root(), &d)
            .unwrap()
            .to_string_lossy()
            .ends_with(".zst")
    );
    let (_b, lvl) = temp_store(FsConfig::default().with_compression(Compression::Level(1)));
    let random = random_bytes("level", 50_000);
    let dr = lvl
        .put_blob_bytes(Bytes::from(random.clone()))
        .await
        .unwrap();
    // A fixed level compresses everything, even what does not shrink.
    assert!(
        blob_file(lvl.root(), &dr)
            .unwrap()
            .to_string_lossy()
            .ends_with(".zst")
    );
    assert_eq!(
        lvl.get_blob_bytes(&dr, 1 << 20).await.unwrap(),
        Some(random)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digest_or_size_publishes_nothing() {
    let (_dir, store) = temp_store(FsConfig::default());
    for len in [10_000usize, 2 << 20] {
        let bytes = random_bytes("wrong", len);
        let claimed = Digest::of(b"something else");
        let err = store
            .put_blob(&claimed, len as u64, chunked(&bytes, 64 * 1024))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
        // Too short and too long.
        let d = Digest::of(&bytes);
        for declared in [len as u64 + 1, len as u64 - 1] {
            let err = store
                .put_blob(&d, declared, chunked(&bytes, 64 * 1024))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
        assert_eq!(
            store.find_missing(&[claimed, d]).await.unwrap(),
            vec![claimed, d]
        );
    }
    assert_eq!(count_files(&store.root().join("blobs")), 0);
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_payload_publishes_nothing() {
    let (_dir, store) = temp_store(FsConfig::default());
    let bytes = random_bytes("fail", 3 << 20);
    let d = Digest::of(&bytes);
    let first = Bytes::copy_from_slice(&bytes[..1 << 20]);
    let stream: larder_core::ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(first),
        Err(larder_core::Error::io(
            "network",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )),
    ]));
    let err = store
        .put_blob(&d, bytes.len() as u64, stream)
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(store.find_missing(&[d]).await.unwrap(), vec![d]);
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_blob_bytes_is_enforced() {
    let (_dir, store) = temp_store(FsConfig::default().with_max_blob_bytes(Some(1000)));
    let bytes = random_bytes("big", 1001);
    let err = store.put_blob_bytes(Bytes::from(bytes)).await.unwrap_err();
    assert!(matches!(err, larder_core::Error::TooLarge { .. }), "{err}");
    store
        .put_blob_bytes(Bytes::from(random_bytes("ok", 1000)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hardlink_placement_links_raw_blobs_read_only() {
    let (dir, store) = temp_store(FsConfig::default());
    let bytes = random_bytes("link", 200_000);
    let d = store
        .put_blob_bytes(Bytes::from(bytes.clone()))
        .await
        .unwrap();
    let blob = blob_file(store.root(), &d).unwrap();
    let dest = dir.path().join("linked");
    std::fs::write(&dest, b"stale").unwrap();
    assert!(
        store
            .place_blob(&d, &dest, Placement::Hardlink)
            .await
            .unwrap()
    );
    let (m, b) = (
        std::fs::metadata(&dest).unwrap(),
        std::fs::metadata(&blob).unwrap(),
    );
    assert_eq!(m.ino(), b.ino(), "not hard-linked");
    assert_eq!(
        m.permissions().mode() & 0o222,
        0,
        "a linked output must be read-only"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    // Copies are independent, writable files.
    let copy = dir.path().join("copied");
    assert!(store.place_blob(&d, &copy, Placement::Copy).await.unwrap());
    let c = std::fs::metadata(&copy).unwrap();
    assert_ne!(c.ino(), b.ino());
    assert_ne!(c.permissions().mode() & 0o200, 0);
    // Placing over the read-only link replaces it.
    assert!(store.place_blob(&d, &dest, Placement::Copy).await.unwrap());
    assert_ne!(std::fs::metadata(&dest).unwrap().ino(), b.ino());
    // Compressed blobs cannot be linked: they are decompressed.
    let text = b"link me if you can\n".repeat(10_000);
    let dt = store
        .put_blob_bytes(Bytes::from(text.clone()))
        .await
        .unwrap();
    let dest2 = dir.path().join("text");
    assert!(
        store
            .place_blob(&dt, &dest2, Placement::Hardlink)
            .await
            .unwrap()
    );
    assert_eq!(std::fs::read(&dest2).unwrap(), text);
    // Missing blobs leave the destination alone.
    let missing = dir.path().join("missing");
    assert!(
        !store
            .place_blob(&Digest::of(b"nope"), &missing, Placement::Hardlink)
            .await
            .unwrap()
    );
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn executable_outputs_are_copied_not_linked() {
    use larder_core::artifacts::{
        Restore, RestoreOptions, collect_outputs, restore_outputs, store_outputs,
    };
    let (dir, store) = temp_store(FsConfig::default());
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("tool"), random_bytes("tool", 100_000)).unwrap();
    std::fs::write(src.join("data"), random_bytes("data", 100_000)).unwrap();
    std::fs::set_permissions(src.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let names = vec!["tool".to_string(), "data".to_string()];
    let collected = collect_outputs(&src, &names, 4096).unwrap();
    let k = key("exec-link");
    let mut entry = larder_core::Entry::new(k.as_str(), "test");
    entry.outputs = collected.outputs;
    store_outputs(&store, &k, &entry, &collected.blobs)
        .await
        .unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let got = store.get_entry(&k).await.unwrap().unwrap();
    assert_eq!(
        restore_outputs(
            &store,
            &got,
            &dest,
            &RestoreOptions::whole_entry().placement(Placement::Hardlink)
        )
        .await
        .unwrap(),
        Restore::Restored
    );
    let tool = std::fs::metadata(dest.join("tool")).unwrap();
    let data = std::fs::metadata(dest.join("data")).unwrap();
    assert_eq!(tool.nlink(), 1, "the executable was hard-linked");
    assert_ne!(tool.permissions().mode() & 0o111, 0);
    assert_eq!(data.nlink(), 2, "the data file was not hard-linked");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_blobs_are_removed_on_every_read_path() {
    let (dir, store) = temp_store(FsConfig::default());
    let cases = [
        ("small", random_bytes("c-small", 20_000)),
        ("streamed", random_bytes("c-big", 3 << 20)),
        ("zst", b"compressible text\n".repeat(200_000)),
    ];
    for (name, bytes) in &cases {
        for how in ["stream", "copy", "link"] {
            let d = store
                .put_blob_bytes(Bytes::from(bytes.clone()))
                .await
                .unwrap();
            let file = blob_file(store.root(), &d).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut stored = std::fs::read(&file).unwrap();
            let mid = stored.len() / 2;
            stored[mid] ^= 1;
            std::fs::write(&file, stored).unwrap();
            let err = match how {
                "stream" => {
                    let read = store.get_blob(&d).await.unwrap();
                    let mut last = None;
                    if let Some(read) = read {
                        let mut s = read.stream;
                        while let Some(item) = s.next().await {
                            if let Err(e) = item {
                                last = Some(e);
                            }
                        }
                    }
                    last
                }
                _ => {
                    let how = if how == "copy" {
                        Placement::Copy
                    } else {
                        Placement::Hardlink
                    };
                    store
                        .place_blob(&d, &dir.path().join("dest"), how)
                        .await
                        .err()
                }
            };
            let err = err.unwrap_or_else(|| panic!("{name}/{how}: corruption not reported"));
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}/{how}: {err}");
            assert!(
                blob_file(store.root(), &d).is_none(),
                "{name}/{how}: blob kept"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fsync_mode_round_trips() {
    let (_dir, store) = temp_store(FsConfig::default().with_fsync(true));
    let k = key("synced");
    let (e, d) = put_blob_entry(&store, &k, &random_bytes("synced", 300_000)).await;
    assert_eq!(store.get_entry(&k).await.unwrap(), Some(e));
    assert!(store.find_missing(&[d]).await.unwrap().is_empty());
}

/// A verified upload file is renamed into the store when stored raw (the same inode, read-only,
/// gone from where it was), and written the usual way, compressed,
/// when the store compresses it; either way it reads back whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_verified_file_is_taken_as_it_is_unless_it_is_to_be_compressed() {
    let (dir, store) = temp_store(FsConfig::default());
    let random = random_bytes("take-me", 3 << 20);
    let text = b"cc -O2 -c src/larder/some_file.c -o build/some_file.o\n".repeat(60_000);
    for (bytes, func, taken) in [
        (&random, HashFn::Blake3, true),
        (&random, HashFn::Sha256, true),
        (&text, HashFn::Blake3, false),
    ] {
        let d = func.digest(bytes);
        let path = dir.path().join(format!("upload-{func:?}-{taken}"));
        std::fs::write(&path, bytes).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let file = VerifiedFile::new(&path, bytes.len() as u64);
        let out = store.put_blob_file(&d, file).await.unwrap();
        assert_eq!(out, PutOutcome::Written);
        assert_eq!(path.exists(), !taken, "{func:?} taken={taken}");
        let stored = blob_file(store.root(), &d).unwrap();
        let meta = std::fs::metadata(&stored).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        assert_eq!(meta.ino() == ino, taken, "{}", stored.display());
        assert_eq!(stored.to_string_lossy().ends_with(".zst"), !taken);
        let back = store.get_blob_bytes(&d, 1 << 30).await.unwrap().unwrap();
        assert!(back == *bytes, "read back differs");
    }
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

/// A file with space reserved past its end (an upload spooled with `fallocate`) gives the
/// reservation back when it is taken: the blob occupies what its length says.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_file_gives_back_space_reserved_past_its_end() {
    use std::os::fd::AsRawFd;
    let (dir, store) = temp_store(FsConfig::default().with_compression(Compression::Off));
    let bytes = random_bytes("reserved", 100_000);
    let path = dir.path().join("upload");
    let f = std::fs::File::create(&path).unwrap();
    // SAFETY: fallocate(2) on a descriptor we own.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 8 << 20) };
    if rc != 0 {
        eprintln!(
            "skipping: fallocate is not supported here ({})",
            std::io::Error::last_os_error()
        );
        return;
    }
    // Written through the same descriptor: opening it again to write would truncate it and
    // give the reservation back.
    let mut f = f;
    std::io::Write::write_all(&mut f, &bytes).unwrap();
    drop(f);
    assert!(std::fs::metadata(&path).unwrap().blocks() * 512 >= 8 << 20);
    let d = Digest::of(&bytes);
    let file = VerifiedFile::new(&path, bytes.len() as u64);
    store.put_blob_file(&d, file).await.unwrap();
    let stored = std::fs::metadata(blob_file(store.root(), &d).unwrap()).unwrap();
    assert!(
        stored.blocks() * 512 < 1 << 20,
        "{} bytes allocated for a blob of {}",
        stored.blocks() * 512,
        bytes.len()
    );
}

/// A file that does not have the length it was announced with is refused, and nothing is
/// stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_verified_file_of_the_wrong_length_is_refused() {
    let (dir, store) = temp_store(FsConfig::default());
    let bytes = random_bytes("short", 50_000);
    let d = Digest::of(&bytes);
    let path = dir.path().join("upload");
    std::fs::write(&path, &bytes[..40_000]).unwrap();
    let err = store
        .put_blob_file(&d, VerifiedFile::new(&path, bytes.len() as u64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(store.find_missing(&[d]).await.unwrap(), vec![d]);
}

//! Bulk existence checks, as REAPI's FindMissingBlobs asks them: lists of thousands, long
//! enough to be split between blocking threads, answered in the order asked.

mod common;

use bytes::Bytes;
use common::*;
use larder_core::{HashFn, Key, Store, StoreExt};
use larder_fs::FsConfig;

/// Long enough to be split across every core the machine has (and then some).
const ASKED: usize = 9_000;

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_blobs_and_entries_are_answered_in_order() {
    let (_dir, store) = temp_store(FsConfig::default());
    let mut asked = Vec::with_capacity(ASKED);
    let mut expected = Vec::new();
    for i in 0..ASKED {
        let bytes = random_bytes(&format!("blob {i}"), 64);
        // Every seventh is stored: SHA-256 (standalone) and BLAKE3 blobs alternately.
        let func = if i % 2 == 0 {
            HashFn::Sha256
        } else {
            HashFn::Blake3
        };
        let d = if i % 7 == 0 {
            store
                .put_blob_bytes_as(func, Bytes::from(bytes))
                .await
                .expect("put blob")
        } else {
            let d = func.digest(&bytes);
            expected.push(d);
            d
        };
        asked.push(d);
    }
    assert_eq!(
        store.find_missing(&asked).await.expect("find_missing"),
        expected
    );

    let mut keys = Vec::with_capacity(ASKED);
    let mut expected = Vec::new();
    for i in 0..ASKED {
        let k = key(&format!("bulk/{i}"));
        if i % 5 == 0 {
            store
                .put_entry(&k, &inline_entry(&k, b"out"))
                .await
                .expect("put entry");
        } else {
            expected.push(k.clone());
        }
        keys.push(k);
    }
    let missing: Vec<Key> = store.find_missing_entries(&keys).await.expect("entries");
    assert_eq!(missing, expected);
}

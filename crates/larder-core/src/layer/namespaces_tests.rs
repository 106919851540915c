//! The namespaces layer over the in-memory reference store: the conformance suite (its keys lie
//! outside the guarded prefixes, so everything forwards), and each rule on the way in and out.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::Namespaces;
use super::namespaces::VALUE_OUTPUT;
use crate::entry::{Content, Entry, Output, OutputKind};
use crate::error::ErrorKind;
use crate::store::ByteStream;
use crate::testkit::{Harness, MemoryStore, run_all};
use crate::{Digest, Key, Store, StoreExt};

struct NsHarness {
    store: Arc<dyn Store>,
    under: Arc<MemoryStore>,
}

#[async_trait]
impl Harness for NsHarness {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.under.corrupt_blob(digest)
    }
    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.under.corrupt_entry(key)
    }
    fn large_blob_bytes(&self) -> u64 {
        32 << 20
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_passes_the_suite() {
    let under = Arc::new(MemoryStore::new());
    run_all(&NsHarness {
        store: Arc::new(Namespaces::new(Arc::clone(&under))),
        under,
    })
    .await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn value_entry(key: &Key, content: Content) -> Entry {
    let mut entry = Entry::new(key.as_str(), "test");
    entry.outputs.push(Output {
        path: VALUE_OUTPUT.into(),
        kind: OutputKind::File {
            content,
            executable: false,
        },
    });
    entry
}

fn stream(bytes: &[u8]) -> ByteStream {
    let chunks: Vec<crate::Result<Bytes>> = bytes
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// The bytes as a blob in `store` (below the layer or through it), and their content.
async fn blob(store: &dyn Store, bytes: &[u8]) -> Content {
    let digest = Digest::of(bytes);
    store
        .put_blob(&digest, bytes.len() as u64, stream(bytes))
        .await
        .expect("storing a blob");
    Content::blob(digest, bytes.len() as u64)
}

fn refused(result: crate::Result<crate::PutOutcome>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what}: the write was accepted"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
            e.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sha256_cas_writes_must_hash_to_their_key() {
    let under = Arc::new(MemoryStore::new());
    let ns = Namespaces::new(Arc::clone(&under));
    let good = b"the real object".to_vec();
    let evil = b"something else entirely".to_vec();
    let key = Key::new(format!("bazel-cas/{}", sha256_hex(&good))).expect("key");

    // Inline, then as a blob (over the inline limit): other bytes are refused.
    let msg = refused(
        ns.put_entry(&key, &value_entry(&key, Content::inline(evil.clone())))
            .await,
        "inline bytes of another hash",
    );
    assert!(
        msg.contains(key.as_str()) && msg.contains("SHA-256"),
        "{msg}"
    );
    let big_evil = vec![7u8; 100_000];
    let content = blob(&ns, &big_evil).await;
    refused(
        ns.put_entry(&key, &value_entry(&key, content)).await,
        "a blob of another hash",
    );
    assert!(under.get_entry(&key).await.expect("read").is_none());

    // The right bytes are stored, inline and as a blob.
    ns.put_entry(&key, &value_entry(&key, Content::inline(good.clone())))
        .await
        .expect("the right inline bytes");
    assert!(ns.get_entry(&key).await.expect("read").is_some());
    let big = vec![9u8; 100_000];
    let big_key = Key::new(format!("bazel-cas/{}", sha256_hex(&big))).expect("key");
    let content = blob(&ns, &big).await;
    ns.put_entry(&big_key, &value_entry(&big_key, content))
        .await
        .expect("the right blob");
    assert!(ns.get_entry(&big_key).await.expect("read").is_some());

    // A blob the store does not hold, a second output, a key that is no SHA-256: refused.
    let absent = Content::blob(Digest::of(b"not stored"), 10);
    refused(
        ns.put_entry(&key, &value_entry(&key, absent)).await,
        "an absent blob",
    );
    let mut two = value_entry(&key, Content::inline(good.clone()));
    two.outputs.push(Output {
        path: "extra".into(),
        kind: OutputKind::Dir,
    });
    refused(ns.put_entry(&key, &two).await, "two outputs");
    let short = Key::new("bazel-cas/abc").expect("key");
    refused(
        ns.put_entry(&short, &value_entry(&short, Content::inline(good.clone())))
            .await,
        "a key that is not a SHA-256",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_breaking_a_rule_below_the_layer_are_misses_and_removed() {
    let under = Arc::new(MemoryStore::new());
    let ns = Namespaces::new(Arc::clone(&under));
    let good = vec![1u8; 50_000];
    let key = Key::new(format!("bazel-cas/{}", sha256_hex(&good))).expect("key");
    // Written straight into the inner store, past the layer: a blob of other bytes.
    let content = blob(under.as_ref(), &[2u8; 50_000]).await;
    under
        .put_entry(&key, &value_entry(&key, content))
        .await
        .expect("writing below the layer");
    assert!(ns.get_entry(&key).await.expect("read").is_none());
    assert!(
        under.get_entry(&key).await.expect("read").is_none(),
        "the bad entry is removed"
    );

    // A ccache value with a second output, and a BLAKE3 CAS entry of other bytes.
    let ck = Key::new(format!("ccache/{}", "a".repeat(40))).expect("key");
    let mut bad = value_entry(&ck, Content::inline(b"result".to_vec()));
    bad.outputs.push(Output {
        path: "lnk".into(),
        kind: OutputKind::Symlink {
            target: "/etc".into(),
        },
    });
    under.put_entry(&ck, &bad).await.expect("below the layer");
    assert!(ns.get_entry(&ck).await.expect("read").is_none());
    let bk = Key::new(format!("bazel-cas-blake3/{}", Digest::of(b"x").to_hex())).expect("key");
    under
        .put_entry(&bk, &value_entry(&bk, Content::inline(b"y".to_vec())))
        .await
        .expect("below the layer");
    assert!(ns.get_entry(&bk).await.expect("read").is_none());
    refused(
        ns.put_entry(&bk, &value_entry(&bk, Content::inline(b"y".to_vec())))
            .await,
        "BLAKE3 CAS of other bytes",
    );
    ns.put_entry(&bk, &value_entry(&bk, Content::inline(b"x".to_vec())))
        .await
        .expect("BLAKE3 CAS of the right bytes");

    // Keys outside the guarded prefixes hold anything.
    let own = Key::new("mine/bazel-cas/x").expect("key");
    ns.put_entry(&own, &bad).await.expect("an ordinary entry");
    assert_eq!(ns.get_entry(&own).await.expect("read"), Some(bad));
}

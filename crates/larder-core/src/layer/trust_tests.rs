//! [`Signed`] and [`Trusted`] over in-memory stores that an attacker writes to directly. (The
//! conformance suite does not apply to [`Signed`]: it reads back an entry equal to the one
//! written, and a signing layer adds a signature on purpose.)

use std::sync::Arc;

use super::trust::{PublicKey, Signed, SigningKey, Trusted, verify_entry};
use super::{BestEffort, Tier, Tiered};
use crate::entry::{Content, Entry, Output, OutputKind};
use crate::error::Error;
use crate::testkit::MemoryStore;
use crate::{Key, Store, StoreExt};

fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

fn entry(k: &Key, bytes: &[u8]) -> Entry {
    let mut e = Entry::new(k.as_str(), "exec");
    e.outputs.push(Output {
        path: "out".into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    });
    e
}

fn keypair() -> (Arc<SigningKey>, PublicKey) {
    let k = SigningKey::generate().expect("random key");
    let public = k.public_key();
    (Arc::new(k), public)
}

fn output_bytes(e: &Entry) -> Vec<u8> {
    match &e.outputs[0].kind {
        OutputKind::File { content, .. } => content
            .inline
            .as_ref()
            .map(|b| b.to_vec())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn signed_writes_carry_a_signature_that_verifies() {
    let (ci, public) = keypair();
    let shared = Arc::new(MemoryStore::new());
    let writer = Signed::new(Arc::clone(&shared), ci);
    let k = key("task");
    writer.put_entry(&k, &entry(&k, b"good")).await.unwrap();
    // Stored with its signature, readable by a store that knows nothing of signatures.
    let stored = shared.get_entry(&k).await.unwrap().expect("stored");
    assert_eq!(verify_entry(&k, &stored, &[public]), Ok(public));
    // Reading through the signing layer returns the entry as stored.
    assert_eq!(writer.get_entry(&k).await.unwrap(), Some(stored));
}

#[tokio::test]
async fn a_reader_requiring_a_key_takes_only_what_it_signed() {
    let (ci, ci_public) = keypair();
    let (attacker, _) = keypair();
    let shared = Arc::new(MemoryStore::new());
    let ci_store = Signed::new(Arc::clone(&shared), ci);
    let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::clone(&rejected);
    let dev =
        Trusted::new(Arc::clone(&shared), vec![ci_public]).on_rejected(Arc::new(move |_: &Key| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));

    let k = key("task");
    ci_store
        .put_entry(&k, &entry(&k, b"from ci"))
        .await
        .unwrap();
    let hit = dev
        .get_entry(&k)
        .await
        .unwrap()
        .expect("CI's entry is a hit");
    assert_eq!(output_bytes(&hit), b"from ci");
    assert_eq!(dev.rejected(), 0);

    // Rewritten without a signature: a miss, counted.
    shared.put_entry(&k, &entry(&k, b"poison")).await.unwrap();
    assert_eq!(dev.get_entry(&k).await.unwrap(), None);
    assert_eq!(dev.rejected(), 1);

    // Signed by a key nobody trusts: a miss.
    Signed::new(Arc::clone(&shared), attacker)
        .put_entry(&k, &entry(&k, b"poison"))
        .await
        .unwrap();
    assert_eq!(dev.get_entry(&k).await.unwrap(), None);
    assert_eq!(dev.rejected(), 2);

    // CI's signed entry copied under another key (a replay): a miss.
    let k2 = key("other-task");
    ci_store
        .put_entry(&k, &entry(&k, b"from ci"))
        .await
        .unwrap();
    let genuine = shared.get_entry(&k).await.unwrap().expect("stored");
    shared.put_entry(&k2, &genuine).await.unwrap();
    assert_eq!(dev.get_entry(&k2).await.unwrap(), None);
    assert_eq!(dev.rejected(), 3);

    // CI's signature kept, the output changed: a miss.
    let mut tampered = genuine.clone();
    tampered.outputs[0].kind = OutputKind::File {
        content: Content::inline(b"poison".to_vec()),
        executable: false,
    };
    shared.put_entry(&k, &tampered).await.unwrap();
    assert_eq!(dev.get_entry(&k).await.unwrap(), None);
    assert_eq!(dev.rejected(), 4);

    assert_eq!(rejected.load(std::sync::atomic::Ordering::Relaxed), 4);
    // A miss is not a removal: the store may be shared and read by others.
    assert!(shared.get_entry(&k).await.unwrap().is_some());
    // An absent entry is a plain miss, not counted as rejected.
    assert_eq!(dev.get_entry(&key("absent")).await.unwrap(), None);
    assert_eq!(dev.rejected(), 4);
    // Several trusted keys: any of them will do.
    let (ci2, ci2_public) = keypair();
    let dev2 = Trusted::new(Arc::clone(&shared), vec![ci_public, ci2_public]);
    Signed::new(Arc::clone(&shared), ci2)
        .put_entry(&k, &entry(&k, b"from ci 2"))
        .await
        .unwrap();
    assert!(dev2.get_entry(&k).await.unwrap().is_some());
}

#[tokio::test]
async fn a_server_refuses_untrusted_writes_outside_exempt_namespaces() {
    let (ci, ci_public) = keypair();
    let (attacker, _) = keypair();
    let under = Arc::new(MemoryStore::new());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let server = Arc::new(
        Trusted::new(Arc::clone(&under), vec![ci_public])
            .check_reads(false)
            .refuse_untrusted_writes(vec!["ccache/".into()])
            .on_refused(Arc::new(move |k: &Key| {
                record.lock().expect("not poisoned").push(k.to_string())
            })),
    );
    let k = key("task");

    let err = server
        .put_entry(&k, &entry(&k, b"unsigned"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("not signed"), "{err}");
    let by_attacker = attacker.sign(&k, &entry(&k, b"x")).unwrap();
    let err = server.put_entry(&k, &by_attacker).await.unwrap_err();
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert_eq!(server.refused(), 2);
    assert_eq!(*seen.lock().unwrap(), vec!["task", "task"]);
    assert!(
        under.get_entry(&k).await.unwrap().is_none(),
        "nothing stored"
    );

    // Signed by CI: stored.
    Signed::new(Arc::clone(&server), ci)
        .put_entry(&k, &entry(&k, b"ci"))
        .await
        .unwrap();
    assert!(under.get_entry(&k).await.unwrap().is_some());
    // Another protocol's namespace: its clients cannot sign.
    let ck = key("ccache/0123");
    server.put_entry(&ck, &entry(&ck, b"ccache")).await.unwrap();
    // Reads are not checked on a server that only refuses pushes.
    under.put_entry(&k, &entry(&k, b"unsigned")).await.unwrap();
    assert!(server.get_entry(&k).await.unwrap().is_some());
}

#[tokio::test]
async fn an_untrusted_remote_entry_is_not_copied_into_the_local_tier() {
    // The CLI's stack: Signed? (no key on a developer's machine) over Tiered[local,
    // Trusted(remote)].
    let (ci, ci_public) = keypair();
    let local = Arc::new(MemoryStore::new());
    let remote = Arc::new(MemoryStore::new());
    let dev = Tiered::new(vec![
        Tier::new(Arc::clone(&local) as Arc<dyn Store>),
        Tier::new(Arc::new(Trusted::new(
            BestEffort::new(Arc::clone(&remote)),
            vec![ci_public],
        ))),
    ])
    .expect("two tiers");
    let (good, bad) = (key("good"), key("bad"));
    Signed::new(Arc::clone(&remote), ci)
        .put_entry(&good, &entry(&good, b"ci"))
        .await
        .unwrap();
    remote
        .put_entry(&bad, &entry(&bad, b"poison"))
        .await
        .unwrap();

    assert!(dev.get_entry(&good).await.unwrap().is_some());
    assert!(
        local.get_entry(&good).await.unwrap().is_some(),
        "a trusted hit is backfilled"
    );
    assert_eq!(dev.get_entry(&bad).await.unwrap(), None);
    assert!(
        local.get_entry(&bad).await.unwrap().is_none(),
        "the untrusted entry stays out of the local cache"
    );
}

//! A key namespace one protocol owns cannot be broken through another (issue 16 item 3): an
//! entry under `bazel-cas/<sha256>` whose bytes do not hash to `<sha256>` is refused when
//! larder's own protocol writes it, and never served to Bazel when it is already on disk.

mod common;

use common::{TestServer, pseudo_random, sha256_hex};
use larder_core::{Content, Digest, Entry, Output, OutputKind, Store, StoreExt};

/// An encoded value entry (as the ccache and Bazel handlers write them) holding `content`.
fn value_entry(key: &str, content: Content) -> Entry {
    let mut e = Entry::new(key, "attacker");
    e.outputs.push(Output {
        path: "value".into(),
        kind: OutputKind::File {
            content,
            executable: false,
        },
    });
    e
}

fn encoded(e: &Entry) -> Vec<u8> {
    e.encode().expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn native_put_cannot_plant_a_bazel_cas_object_of_other_bytes() {
    let s = TestServer::start().await;
    let real = pseudo_random("real object", 3000);
    let evil = pseudo_random("planted object", 3000);
    let sha = sha256_hex(&real);
    let key = format!("bazel-cas/{sha}");

    // Inline bytes of another hash, through PUT /v1/entries/bazel-cas/<sha256>.
    let entry = value_entry(&key, Content::inline(evil.clone()));
    assert_eq!(
        s.put(&format!("/v1/entries/{key}"), encoded(&entry)).await,
        400
    );
    assert_eq!(s.get(&format!("/bazel/cas/{sha}")).await.0, 404);
    assert_eq!(s.head(&format!("/bazel/cas/{sha}")).await, 404);

    // A blob of another hash (over the inline limit), uploaded first through /v1/blobs.
    let big_evil = pseudo_random("planted blob", 200_000);
    let digest = Digest::of(&big_evil);
    assert_eq!(
        s.put(&format!("/v1/blobs/{digest}"), big_evil.clone())
            .await,
        201
    );
    let entry = value_entry(&key, Content::blob(digest, big_evil.len() as u64));
    assert_eq!(
        s.put(&format!("/v1/entries/{key}"), encoded(&entry)).await,
        400
    );
    assert_eq!(s.get(&format!("/bazel/cas/{sha}")).await.0, 404);

    // The same bytes through Bazel's protocol, and the right bytes through the native one, are
    // served.
    assert_eq!(s.put(&format!("/bazel/cas/{sha}"), evil.clone()).await, 400);
    let entry = value_entry(&key, Content::inline(real.clone()));
    assert_eq!(
        s.put(&format!("/v1/entries/{key}"), encoded(&entry)).await,
        201
    );
    let (status, body) = s.get(&format!("/bazel/cas/{sha}")).await;
    assert_eq!((status, &body[..]), (200, &real[..]));

    // A ccache value cannot be given a second output (a symlink to plant) either.
    let ck = format!("ccache/{}", "a".repeat(40));
    let mut two = value_entry(&ck, Content::inline(b"result".to_vec()));
    two.outputs.push(Output {
        path: "lnk".into(),
        kind: OutputKind::Symlink {
            target: "/outside".into(),
        },
    });
    assert_eq!(
        s.put(&format!("/v1/entries/{ck}"), encoded(&two)).await,
        400
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_bazel_cas_entry_already_on_disk_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");
    let real = pseudo_random("real", 100_000);
    let evil = pseudo_random("evil", 100_000);
    let sha = sha256_hex(&real);
    let key = larder_core::Key::new(format!("bazel-cas/{sha}")).expect("key");
    {
        // Written below the server, straight into its directory (as another process sharing
        // it, or an older server, could have).
        let fs = larder_fs::FsStore::open(&root, larder_fs::FsConfig::default()).expect("open");
        let digest = Digest::of(&evil);
        fs.put_blob(
            &digest,
            evil.len() as u64,
            Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(
                evil.clone(),
            ))])),
        )
        .await
        .expect("blob");
        fs.put_entry(
            &key,
            &value_entry(key.as_str(), Content::blob(digest, evil.len() as u64)),
        )
        .await
        .expect("entry");
        fs.flush().await.expect("flush");
    }
    let s = TestServer::start_in(&root, |c| c).await;
    assert_eq!(s.head(&format!("/bazel/cas/{sha}")).await, 404);
    assert_eq!(s.get(&format!("/bazel/cas/{sha}")).await.0, 404);
    assert_eq!(s.get(&format!("/v1/entries/{key}")).await.0, 404);
    s.stop().await;
}

//! Bazel's HTTP cache: AC and CAS, the SHA-256 check, the empty blob and instance names.

mod common;

use common::{TestServer, pseudo_random, sha256_hex};

const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test(flavor = "multi_thread")]
async fn cas_and_ac_round_trip() {
    let s = TestServer::start().await;
    for size in [100usize, 3 << 20] {
        let blob = pseudo_random("bazel cas", size);
        let path = format!("/bazel/cas/{}", sha256_hex(&blob));
        assert_eq!(s.get(&path).await.0, 404);
        assert_eq!(s.head(&path).await, 404);
        assert_eq!(s.put(&path, blob.clone()).await, 200);
        let (status, body) = s.get(&path).await;
        assert_eq!(status, 200);
        assert!(body[..] == blob[..], "{size}");
        assert_eq!(s.head(&path).await, 200);
        // The CAS is shared by instances.
        let inst = format!("/bazel/my/instance/cas/{}", sha256_hex(&blob));
        assert_eq!(s.get(&inst).await.0, 200);
    }
    let action = "ab".repeat(32);
    let result = pseudo_random("action result", 300);
    let ac = format!("/bazel/ac/{action}");
    assert_eq!(s.get(&ac).await.0, 404);
    // AC values are opaque: no hash check.
    assert_eq!(s.put(&ac, result.clone()).await, 200);
    assert_eq!(&s.get(&ac).await.1[..], &result[..]);
    // Instances have their own action cache.
    assert_eq!(s.get(&format!("/bazel/other/ac/{action}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn cas_upload_must_hash_to_its_name() {
    let s = TestServer::start().await;
    for size in [10usize, 2 << 20] {
        let blob = pseudo_random("mismatch", size);
        let wrong = sha256_hex(b"something else");
        let path = format!("/bazel/cas/{wrong}");
        assert_eq!(s.put(&path, blob).await, 400, "{size}");
        assert_eq!(s.get(&path).await.0, 404);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_blob_always_exists() {
    let s = TestServer::start().await;
    let path = format!("/bazel/cas/{EMPTY}");
    assert_eq!(s.get(&path).await, (200, bytes::Bytes::new()));
    assert_eq!(s.head(&path).await, 200);
    assert_eq!(s.put(&path, Vec::new()).await, 200);
    assert_eq!(s.put(&path, &b"x"[..]).await, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_paths_are_400() {
    let s = TestServer::start().await;
    let h = "a".repeat(64);
    for bad in [
        format!("/bazel/xx/{h}"),
        format!("/bazel/ac/{}", "A".repeat(64)),
        "/bazel/ac/123".to_string(),
        format!("/bazel/{h}"),
        format!("/bazel/..%2F/ac/{h}"),
    ] {
        assert_eq!(s.get(&bad).await.0, 400, "{bad}");
    }
}

//! ccache's HTTP remote storage: the three layouts, HEAD, DELETE, misses and large values.

mod common;

use common::{TestServer, pseudo_random};

const KEY: &str = "0123456789abcdef0123456789abcdef01234567";

fn layouts(prefix: &str, key: &str) -> [String; 3] {
    [
        format!("{prefix}/{}/{}", &key[..2], &key[2..]),
        format!("{prefix}/{key}"),
        format!("{prefix}/ac/{key}{}", &key[..24]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn layouts_map_to_one_object() {
    let s = TestServer::start().await;
    let [subdirs, flat, bazel] = layouts("/ccache", KEY);
    // A miss: manifest then result, as ccache does.
    assert_eq!(s.get(&subdirs).await.0, 404);
    assert_eq!(s.head(&subdirs).await, 404);
    let value = pseudo_random("ccache result", 10_000);
    assert_eq!(s.put(&subdirs, value.clone()).await, 201);
    for path in [&subdirs, &flat, &bazel] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(&body[..], &value[..], "{path}");
        assert_eq!(s.head(path).await, 200, "{path}");
    }
    // Overwrite through another layout, small enough to be inline.
    assert_eq!(s.put(&bazel, &b"tiny"[..]).await, 201);
    assert_eq!(&s.get(&flat).await.1[..], b"tiny");
    // An empty value is a value.
    assert_eq!(s.put(&flat, Vec::new()).await, 201);
    assert_eq!(s.get(&subdirs).await, (200, bytes::Bytes::new()));
    assert_eq!(s.delete(&flat).await, 200);
    assert_eq!(s.delete(&flat).await, 404);
    for path in [&subdirs, &flat, &bazel] {
        assert_eq!(s.get(path).await.0, 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_paths_are_separate_caches() {
    let s = TestServer::start().await;
    let [team_a, ..] = layouts("/ccache/team-a", KEY);
    let [_, team_b, _] = layouts("/ccache/team-b", KEY);
    assert_eq!(s.put(&team_a, &b"a"[..]).await, 201);
    assert_eq!(s.get(&team_b).await.0, 404);
    let [_, a_flat, _] = layouts("/ccache/team-a", KEY);
    assert_eq!(&s.get(&a_flat).await.1[..], b"a");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_values_stream_through_a_blob() {
    let s = TestServer::start().await;
    let [subdirs, flat, _] = layouts("/ccache", KEY);
    let value = pseudo_random("big ccache result", 5 << 20);
    assert_eq!(s.put(&subdirs, value.clone()).await, 201);
    let (status, body) = s.get(&flat).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), value.len());
    assert!(body[..] == value[..]);
    // Spool files are gone once stored.
    let spool = s.root.join("server-tmp");
    assert_eq!(std::fs::read_dir(&spool).expect("spool dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_paths_are_400() {
    let s = TestServer::start().await;
    for bad in [
        "/ccache/x".to_string(),
        format!("/ccache/{}", KEY.to_uppercase()),
        format!("/ccache/ac/{KEY}{}", "f".repeat(24)),
        format!("/ccache/..%2F{KEY}"),
        format!("/ccache/a%20b/{KEY}"),
    ] {
        assert_eq!(s.get(&bad).await.0, 400, "{bad}");
        assert_eq!(s.put(&bad, &b"x"[..]).await, 400, "{bad}");
    }
}

/// A key with a multi-byte character where a key form is sliced (issue 16: `abc%C3%A9aaaa…`
/// panicked the handler and dropped the connection) is a 400, and the server goes on.
#[tokio::test(flavor = "multi_thread")]
async fn multi_byte_characters_in_a_key_are_400_not_a_panic() {
    let s = TestServer::start().await;
    let a28 = "a".repeat(28);
    for bad in [
        format!("/ccache/abc%C3%A9{a28}"),
        format!("/ccache/ab/c%C3%A9{a28}"),
        format!("/ccache/team/abc%C3%A9{a28}"),
    ] {
        assert_eq!(s.get(&bad).await.0, 400, "{bad}");
        assert_eq!(s.head(&bad).await, 400, "{bad}");
        assert_eq!(s.put(&bad, &b"x"[..]).await, 400, "{bad}");
    }
    assert_eq!(s.get("/healthz").await.0, 200);
}

//! The native protocol, route by route, with a real HTTP client.

mod common;

use common::{TestServer, pseudo_random};
use larder_core::{Content, Digest, Entry, Output, OutputKind, StoreStats};

fn entry(key: &str, bytes: &[u8]) -> Vec<u8> {
    let mut e = Entry::new(key, "test");
    e.outputs.push(Output {
        path: "out.txt".into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    });
    e.encode().expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn health() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_round_trip_create_and_delete() {
    let s = TestServer::start().await;
    let path = "/v1/entries/team/app:build@x86_64";
    assert_eq!(s.get(path).await.0, 404);
    let first = entry("team/app:build@x86_64", b"one");
    assert_eq!(s.put(path, first.clone()).await, 201);
    let (status, body) = s.get(path).await;
    assert_eq!(status, 200);
    let got = Entry::decode(&body).expect("decode");
    assert_eq!(got, Entry::decode(&first).expect("decode"));
    // Create mode keeps the first.
    let second = entry("team/app:build@x86_64", b"two");
    assert_eq!(
        s.put(&format!("{path}?mode=create"), second.clone()).await,
        200
    );
    assert_eq!(s.get(path).await.1, first);
    // Overwrite replaces it.
    assert_eq!(s.put(path, second.clone()).await, 201);
    assert_eq!(s.get(&format!("{path}?record_access=0")).await.1, second);
    assert_eq!(s.delete(path).await, 204);
    assert_eq!(s.delete(path).await, 404);
    assert_eq!(s.get(path).await.0, 404);
    // Not an entry.
    assert_eq!(s.put(path, &b"not an entry"[..]).await, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_are_400() {
    let s = TestServer::start().await;
    let long = "k".repeat(513);
    for bad in [
        "..%2Fx",
        "a%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "a%20b",
        "a%5Cb",
        long.as_str(),
    ] {
        let path = format!("/v1/entries/{bad}");
        assert_eq!(s.get(&path).await.0, 400, "GET {bad}");
        assert_eq!(s.put(&path, entry("x", b"x")).await, 400, "PUT {bad}");
        assert_eq!(s.delete(&path).await, 400, "DELETE {bad}");
    }
    for bad in ["xyz", &"g".repeat(64), &"0".repeat(63)] {
        assert_eq!(s.get(&format!("/v1/blobs/{bad}")).await.0, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_stream_verify_and_find_missing() {
    let s = TestServer::start().await;
    let data = pseudo_random("native blob", 3 << 20);
    let d = Digest::of(&data);
    let path = format!("/v1/blobs/{d}");
    assert_eq!(s.get(&path).await.0, 404);
    assert_eq!(s.head(&path).await, 404);
    // Wrong digest: refused, nothing stored.
    let wrong = Digest::of(b"something else");
    assert_eq!(
        s.put(&format!("/v1/blobs/{wrong}"), data.clone()).await,
        400
    );
    assert_eq!(s.head(&format!("/v1/blobs/{wrong}")).await, 404);
    // Wrong declared size: refused.
    let r = s
        .client
        .put(s.url(&path))
        .header("x-larder-size", data.len() + 1)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(vec![
            Ok::<_, std::io::Error>(bytes::Bytes::from(data.clone())),
        ])))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 400);
    // Chunked without a size: refused.
    let r = s
        .client
        .put(s.url(&path))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(vec![
            Ok::<_, std::io::Error>(bytes::Bytes::from(data.clone())),
        ])))
        .send()
        .await
        .expect("the answer arrives: the server drains a modest body");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(s.head(&path).await, 404);
    assert_eq!(s.put(&path, data.clone()).await, 201);
    assert_eq!(s.put(&path, data.clone()).await, 200);
    assert_eq!(s.head(&path).await, 200);
    let r = s.client.get(s.url(&path)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("x-larder-size")
            .and_then(|v| v.to_str().ok()),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(&r.bytes().await.expect("body")[..], &data[..]);
    // The empty blob.
    let empty = Digest::empty();
    assert_eq!(s.put(&format!("/v1/blobs/{empty}"), Vec::new()).await, 201);
    let (status, body) = s.get(&format!("/v1/blobs/{empty}")).await;
    assert_eq!((status, body.len()), (200, 0));

    let absent = Digest::of(b"absent");
    let req = serde_json::to_vec(&[d.to_hex(), absent.to_hex(), empty.to_hex()]).expect("json");
    let r = s
        .client
        .post(s.url("/v1/find-missing"))
        .body(req)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let missing: Vec<String> =
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    assert_eq!(missing, vec![absent.to_hex()]);
    let r = s
        .client
        .post(s.url("/v1/find-missing"))
        .body("[\"nothex\"]")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_and_flush() {
    let s = TestServer::start().await;
    let path = "/v1/entries/counted";
    assert_eq!(s.put(path, entry("counted", b"c")).await, 201);
    assert_eq!(s.get(path).await.0, 200);
    assert_eq!(s.get("/v1/entries/nothing-here").await.0, 404);
    let r = s
        .client
        .post(s.url("/v1/flush"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 204);
    let (status, body) = s.get("/v1/stats").await;
    assert_eq!(status, 200);
    let stats: StoreStats = serde_json::from_slice(&body).expect("stats");
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_refuses_writes() {
    let s = TestServer::start_with(|c| c.with_read_only(true)).await;
    let d = Digest::of(b"x");
    assert_eq!(s.put("/v1/entries/k", entry("k", b"x")).await, 403);
    assert_eq!(s.delete("/v1/entries/k").await, 403);
    assert_eq!(s.put(&format!("/v1/blobs/{d}"), &b"x"[..]).await, 403);
    assert_eq!(
        s.put(&format!("/ccache/{}", "a".repeat(40)), &b"x"[..])
            .await,
        403
    );
    assert_eq!(
        s.put(&format!("/bazel/ac/{}", "a".repeat(64)), &b"x"[..])
            .await,
        403
    );
    assert_eq!(s.get("/v1/entries/k").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_size_bound_is_413() {
    let s = TestServer::start_with(|c| c.with_max_blob_bytes(Some(1 << 20))).await;
    let big = pseudo_random("too big", 2 << 20);
    let d = Digest::of(&big);
    // Declared by Content-Length.
    assert_eq!(s.put(&format!("/v1/blobs/{d}"), big.clone()).await, 413);
    // Declared by X-Larder-Size, body not sent at all.
    let r = s
        .client
        .put(s.url(&format!("/v1/blobs/{d}")))
        .header("x-larder-size", big.len())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 413);
    // Undeclared (chunked): found while streaming.
    for path in [
        format!("/ccache/{}", "b".repeat(40)),
        format!("/bazel/cas/{}", common::sha256_hex(&big)),
    ] {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
            .chunks(64 << 10)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let r = s
            .client
            .put(s.url(&path))
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .expect("the answer arrives: the server drains a modest body");
        assert_eq!(r.status().as_u16(), 413, "{path}");
        assert_eq!(s.get(&path).await.0, 404, "{path}");
    }
    // Under the bound is fine.
    let small = pseudo_random("small enough", 1 << 19);
    assert_eq!(
        s.put(&format!("/v1/blobs/{}", Digest::of(&small)), small)
            .await,
        201
    );
}

//! The client's own behaviour against a scripted server: retries on temporary failures only,
//! time-outs, refused connections, and downloads that do not verify.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use larder_core::{Digest, Entry, ErrorKind, Key, Store, StoreExt, StoreStats};
use larder_http::HttpStore;

/// Serve `app` on a free loopback port; returns the store's base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

fn store(url: &str) -> HttpStore {
    HttpStore::builder(url)
        .retries(3, Duration::from_millis(10))
        .request_timeout(Duration::from_millis(500))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_are_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let app = Router::new().route(
        "/v1/stats",
        get(move || {
            let c = Arc::clone(&c);
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    axum::Json(StoreStats::default()).into_response()
                }
            }
        }),
    );
    let s = store(&serve(app).await);
    assert_eq!(s.stats().await.expect("stats"), StoreStats::default());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_give_up_and_stay_temporary() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let app = Router::new().route(
        "/v1/stats",
        get(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let s = store(&serve(app).await);
    let err = s.stats().await.expect_err("always 503");
    assert!(err.is_temporary(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_are_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let app = Router::new().route(
        "/v1/entries/{*key}",
        get(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::BAD_REQUEST, "no") }
        }),
    );
    let s = store(&serve(app).await);
    let key = Key::new("k").expect("key");
    let err = s.get_entry(&key).await.expect_err("400");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_and_time_outs_are_temporary() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let s = store(&format!("http://{addr}/v1"));
    let err = s.stats().await.expect_err("refused");
    assert!(err.is_temporary(), "{err}");

    let app = Router::new().route(
        "/v1/stats",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            axum::Json(StoreStats::default())
        }),
    );
    let s = HttpStore::builder(serve(app).await)
        .retries(0, Duration::from_millis(10))
        .request_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let err = s.stats().await.expect_err("time-out");
    assert!(err.is_temporary(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_that_do_not_verify_end_corrupt() {
    let good = b"the real bytes".to_vec();
    let d = Digest::of(&good);
    let app = Router::new()
        .route(
            "/v1/blobs/{digest}",
            get(|| async { ([("x-larder-size", "14")], "not the bytes!").into_response() }),
        )
        .route(
            "/v1/entries/{*key}",
            get(|| async { (StatusCode::OK, "LRDE\x01\x00garbage").into_response() }),
        );
    let s = store(&serve(app).await);
    let read = s.get_blob(&d).await.expect("get").expect("present");
    assert_eq!(read.size, 14);
    let items: Vec<_> = read.stream.collect().await;
    let last = items.last().expect("an item");
    assert_eq!(
        last.as_ref().expect_err("corrupt").kind(),
        ErrorKind::Corrupt
    );
    // An undecodable entry is a miss.
    let key = Key::new("k").expect("key");
    assert_eq!(s.get_entry(&key).await.expect("miss"), None::<Entry>);
}

#[test]
fn only_http_and_https_urls_are_accepted() {
    for bad in ["ftp://cache.example/v1", "cache.example/v1"] {
        let err = HttpStore::new(bad).expect_err("not http(s)");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    assert!(HttpStore::new("https://cache.example/v1").is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_downloads_end_with_a_temporary_error() {
    let app = Router::new().route(
        "/v1/blobs/{digest}",
        get(|| async {
            let first = futures::stream::once(async {
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"half"))
            });
            let body = axum::body::Body::from_stream(first.chain(futures::stream::pending()));
            ([("x-larder-size", "8")], body).into_response()
        }),
    );
    let s = HttpStore::builder(serve(app).await)
        .read_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let read = s
        .get_blob(&Digest::of(b"whatever"))
        .await
        .expect("get")
        .expect("present");
    let items: Vec<_> = read.stream.collect().await;
    assert_eq!(items.len(), 2);
    let err = items[1].as_ref().expect_err("stalled");
    assert!(err.is_temporary(), "{err}");
}

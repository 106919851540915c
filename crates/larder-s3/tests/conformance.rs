//! The shared conformance suite and S3-specific checks, against a real SeaweedFS (`weed mini`)
//! started on free loopback ports by `larder-testservers` (skipped when `weed` is missing,
//! except under CI, where that fails).

mod common;

use std::time::Duration;

use larder_core::{ErrorKind, Key, Store, StoreExt};
use larder_s3::{BucketBuilder, S3Store};
use larder_testservers::SeaweedFs;

fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("t/{name}-{}-{nanos}", std::process::id())
}

fn store_for(s3: &SeaweedFs, prefix: &str) -> S3Store {
    common::builder(s3)
        .with_prefix(prefix)
        .expect("prefix")
        .build()
        .expect("store")
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_against_seaweedfs() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let store = store_for(&s3, &unique_prefix("conformance"));
    larder_bucket::testkit::conformance(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minio_url_with_keys_from_env_and_stats() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let prefix = unique_prefix("url");
    let url = format!("minio://{}/{}/{prefix}", s3.host_port(), s3.bucket());
    // Keys in the URL's query are not supported on purpose; they come from the builder here
    // (the env path is covered by the CLI's e2e test, which sets LARDER_S3_*).
    let store = larder_s3::S3StoreBuilder::from_url(&url)
        .expect("url")
        .with_credentials(s3.access_key(), s3.secret_key())
        .build()
        .expect("store");
    assert!(store.to_string().contains(&prefix), "{store}");
    let d = store
        .put_blob_bytes(bytes::Bytes::from_static(b"stats blob"))
        .await
        .expect("put");
    let key = Key::new("stats/key").expect("key");
    let mut e = larder_core::Entry::new(key.as_str(), "test");
    e.outputs.push(larder_core::Output {
        path: "f".into(),
        kind: larder_core::OutputKind::File {
            content: larder_core::Content::blob(d, 10),
            executable: false,
        },
    });
    store.put_entry(&key, &e).await.expect("entry");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.entries, 1);
    assert!(stats.bytes > 10, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_is_a_permanent_error_that_says_so() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let store = common::builder(&s3)
        .with_credentials(s3.access_key(), "not-the-secret")
        .build()
        .expect("store");
    let key = Key::new("any").expect("key");
    let started = std::time::Instant::now();
    let err = store.get_entry(&key).await.expect_err("wrong secret");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("access key"), "{err}");
    // Permanent errors are not retried.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_endpoint_is_a_temporary_error() {
    let port = larder_testservers::free_ports(1).expect("port")[0];
    let store = larder_s3::S3StoreBuilder::new("bucket")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_path_style(true)
        .with_credentials("a", "b")
        .with_retries(1)
        .build()
        .expect("store");
    let err = store
        .get_entry(&Key::new("k").expect("key"))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_server_is_a_temporary_error_within_the_request_timeout() {
    let port = larder_bucket::testkit::silent_port();
    let store = larder_s3::S3StoreBuilder::new("bucket")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_path_style(true)
        .with_credentials("a", "b")
        .with_retries(1)
        .with_request_timeout(Duration::from_millis(700))
        .build()
        .expect("store");
    let started = std::time::Instant::now();
    let err = store
        .get_entry(&Key::new("k").expect("key"))
        .await
        .expect_err("nothing answers");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

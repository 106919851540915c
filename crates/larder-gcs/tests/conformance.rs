//! The shared conformance suite and GCS-specific checks, against a real fake-gcs-server
//! started on a free loopback port by `larder-testservers` (skipped when it is missing, except
//! under CI, where that fails). One trial per check (`gcs::…`, including a dead and a hanging
//! endpoint).

mod common;

use std::time::Duration;

use larder_bucket::testkit::BucketHarness;
use larder_core::testkit::{Suites, Unavailable};
use larder_core::{Content, Digest, Entry, ErrorKind, Key, Output, OutputKind, Store, StoreExt};
use larder_gcs::{BucketBuilder, GcsStore, GcsStoreBuilder};
use larder_testservers::FakeGcs;

async fn gs_url_with_endpoint_params_and_stats_from_listing_metadata() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let prefix = format!("t/url-{}", std::process::id());
    let (bucket, endpoint) = (gcs.bucket(), gcs.endpoint());
    let url = format!("gs://{bucket}/{prefix}?endpoint={endpoint}&anonymous=true");
    let store = GcsStore::from_url(&url).expect("store");
    assert!(store.to_string().contains(&prefix), "{store}");
    let blob = bytes::Bytes::from_static(b"stats blob");
    let mut e = Entry::new("stats/key", "test");
    e.cost_ms = 1234;
    e.outputs.push(Output {
        path: "f".into(),
        kind: OutputKind::File {
            content: Content::blob(Digest::of(&blob), 10),
            executable: false,
        },
    });
    store.put_blob_bytes(blob).await.expect("blob");
    let key = Key::new(&e.key).expect("key");
    store.put_entry(&key, &e).await.expect("entry");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.entries, 1);
    assert!(stats.bytes > 10, "{stats:?}");
    // The entry's size and cost come back from its custom metadata.
    let listed = futures::TryStreamExt::try_collect::<Vec<_>>(store.list()).await;
    let listed = listed.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].size > 10 && listed[0].cost_ms == 1234,
        "{listed:?}"
    );
}

async fn missing_bucket_is_a_permanent_error() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let store = GcsStoreBuilder::new("no-such-bucket")
        .with_endpoint(gcs.endpoint())
        .with_anonymous(true)
        .build()
        .expect("store");
    let err = store.stats().await.expect_err("no bucket");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("does the bucket exist"), "{err}");
}

/// A store at `addr` (nothing there, or a server that never answers) that gives up quickly.
fn at(addr: std::net::SocketAddr) -> GcsStore {
    let b = GcsStoreBuilder::new("bucket").with_anonymous(true);
    let b = b.with_endpoint(format!("http://{addr}"));
    let b = b
        .with_retries(1)
        .with_request_timeout(Duration::from_millis(700));
    b.build().expect("store")
}

async fn a_streamed_upload_that_fails_stores_nothing() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let store = common::store(&gcs, "failed-upload");
    // Over the 8 MiB part size: one multipart request whose body is the caller's stream.
    let blob = bytes::Bytes::from(vec![7u8; 9 << 20]);
    let chunks: Vec<bytes::Bytes> = blob.chunks(1 << 20).map(|c| blob.slice_ref(c)).collect();
    let put = |digest, chunks: Vec<larder_core::Result<bytes::Bytes>>| {
        let body = Box::pin(futures::stream::iter(chunks));
        let (store, len) = (store.clone(), blob.len() as u64);
        async move { store.put_blob(&digest, len, body).await }
    };
    let ok = |chunks: &[bytes::Bytes]| chunks.iter().cloned().map(Ok).collect::<Vec<_>>();
    let wrong = Digest::of(b"something else");
    let err = put(wrong, ok(&chunks)).await.expect_err("wrong bytes");
    assert!(err.to_string().contains("do not hash"), "{err}");
    let right = Digest::of(&blob);
    let mut failing = ok(&chunks[..5]);
    failing.push(Err(larder_core::Error::invalid("the producer gave up")));
    let err = put(right, failing).await.expect_err("failed payload");
    assert!(err.to_string().contains("the producer gave up"), "{err}");
    let missing = store.find_missing(&[wrong, right]).await.expect("find");
    assert_eq!(
        missing,
        vec![wrong, right],
        "a failed upload left an object"
    );
    assert_eq!(
        put(right, ok(&chunks)).await.expect("good bytes"),
        larder_core::PutOutcome::Written
    );
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("gcs", || async {
            let gcs =
                FakeGcs::start().ok_or(Unavailable("fake-gcs-server is not installed".into()))?;
            let store = common::store(&gcs, "conformance");
            Ok(BucketHarness::new(store).at_endpoint(at).keep(gcs))
        })
        .test(
            "gs_url_with_endpoint_params_and_stats_from_listing_metadata",
            gs_url_with_endpoint_params_and_stats_from_listing_metadata,
        )
        .test(
            "missing_bucket_is_a_permanent_error",
            missing_bucket_is_a_permanent_error,
        )
        .test(
            "a_streamed_upload_that_fails_stores_nothing",
            a_streamed_upload_that_fails_stores_nothing,
        )
        .run()
}

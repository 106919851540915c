//! The shared conformance suite and GCS-specific checks, against a real fake-gcs-server
//! started on a free loopback port by `larder-testservers` (skipped when it is missing, except
//! under CI, where that fails).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use larder_core::testkit::{Harness, run_all};
use larder_core::{Digest, ErrorKind, Key, Store, StoreExt};
use larder_gcs::GcsStore;
use larder_testservers::FakeGcs;

struct GcsHarness {
    gcs: FakeGcs,
    prefix: String,
    store: Arc<GcsStore>,
}

impl GcsHarness {
    async fn damage(&self, object: String) -> bool {
        let Some(mut bytes) = common::get_raw(&self.gcs, &object).await else {
            return false;
        };
        if bytes.is_empty() {
            return false;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        bytes[0] ^= 0xff;
        common::put_raw(&self.gcs, &object, bytes).await;
        true
    }
}

#[async_trait]
impl Harness for GcsHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.damage(format!("{}/blobs/{}", self.prefix, digest.to_hex()))
            .await
    }

    async fn corrupt_entry(&self, key: &Key) -> bool {
        self.damage(format!("{}/entries/{}", self.prefix, key.storage_name()))
            .await
    }

    fn large_blob_bytes(&self) -> u64 {
        // Streamed up and down over loopback: 256 MiB still catches any store that buffers a
        // whole blob, and keeps CI quick.
        std::env::var("LARDER_TESTKIT_LARGE_BYTES")
            .ok()
            .and_then(|v| larder_core::size::parse_size(&v).ok())
            .unwrap_or(256 << 20)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_against_fake_gcs_server() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let prefix = common::unique_prefix("conformance");
    let store = Arc::new(
        common::builder(&gcs)
            .with_prefix(&prefix)
            .expect("prefix")
            .build()
            .expect("store"),
    );
    let h = GcsHarness { gcs, prefix, store };
    run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gs_url_with_endpoint_from_env_style_params_and_stats() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let prefix = common::unique_prefix("url");
    let url = format!(
        "gs://{}/{prefix}?endpoint={}&anonymous=true",
        gcs.bucket(),
        gcs.endpoint()
    );
    let store = GcsStore::from_url(&url).expect("store");
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
async fn missing_bucket_is_a_permanent_error() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let store = GcsStore::builder("no-such-bucket")
        .with_endpoint(gcs.endpoint())
        .with_anonymous(true)
        .build()
        .expect("store");
    let err = store.stats().await.expect_err("no bucket");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_endpoint_is_a_temporary_error() {
    let port = larder_testservers::free_ports(1).expect("port")[0];
    let store = GcsStore::builder("bucket")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_anonymous(true)
        .with_retries(1)
        .build()
        .expect("store");
    let err = store
        .get_entry(&Key::new("k").expect("key"))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    let err = store
        .find_missing(&[Digest::of(b"x")])
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_server_is_a_temporary_error_within_the_request_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let store = GcsStore::builder("bucket")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_anonymous(true)
        .with_retries(1)
        .with_request_timeout(Duration::from_millis(700))
        .build()
        .expect("store");
    let started = std::time::Instant::now();
    let err = store
        .find_missing(&[Digest::of(b"x")])
        .await
        .expect_err("nothing answers");
    assert_eq!(err.kind(), ErrorKind::Temporary, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

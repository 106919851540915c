//! `gs://` URLs and builder checks: what parses, what is refused, and what the store says it is.

use larder_bucket::testkit::{unknown_parameters_are_refused, urls_are_checked};
use larder_gcs::{BucketBuilder, GcsStore, GcsStoreBuilder};

fn shown(url: &str) -> String {
    let b = GcsStoreBuilder::from_url(url).expect(url);
    format!("{b:?}\n{}", b.clone().build().expect("store"))
}

#[test]
fn gs_urls_parse() {
    let s = shown("gs://my-bucket/team/cache/?anonymous=false");
    assert!(s.ends_with("gcs store gs://my-bucket/team/cache/"), "{s}");
    let s = shown("GS://bkt/p?endpoint=http%3A%2F%2F127.0.0.1%3A4443&anonymous&trim_grace=60");
    assert!(s.ends_with("gs://bkt/p/ at http://127.0.0.1:4443"), "{s}");
    assert!(
        s.contains("anonymous: Some(true)") && s.contains("trim_grace: 60s"),
        "{s}"
    );
    assert!(shown("gs://bkt").ends_with("gcs store gs://bkt/"));
    let store = GcsStore::from_url("gs://bkt/x?concurrency=4").expect("store");
    assert_eq!(
        larder_bucket::Bucket::settings(store.backend()).concurrency,
        4
    );
}

#[test]
fn bad_urls_and_builders_are_refused() {
    let bad = ["gs://", "gs://Bad", "gs://-bkt/x", "gs://bkt/a/../b"];
    let bad = [&bad[..], &["s3://bkt/x", "gs://bkt?endpoint=127.0.0.1:1"]].concat();
    urls_are_checked(GcsStoreBuilder::from_url, "gs://bkt/x", "anonymous", &bad);
    unknown_parameters_are_refused(GcsStoreBuilder::from_url, "gs://bkt");
    let b = GcsStoreBuilder::new("bkt").with_endpoint("127.0.0.1:1");
    assert!(b.build().unwrap_err().to_string().contains("http://"));
    assert!(GcsStoreBuilder::new("bkt").with_prefix("a b").is_err());
}

//! `s3://` and `minio://` URLs and builder checks: what parses, what is refused, and what the
//! store says it is (no server needed: building contacts nothing).

use std::time::Duration;

use larder_bucket::Bucket;
use larder_bucket::testkit::{unknown_parameters_are_refused, urls_are_checked};
use larder_s3::{BucketBuilder, S3Store, S3StoreBuilder};

/// The builder `url` gives, as its `Debug` shows it.
fn shown(url: &str) -> String {
    format!("{:?}", S3StoreBuilder::from_url(url).expect(url))
}

#[test]
fn s3_urls_parse() {
    let s = shown("s3://my-bucket/team/cache/");
    for part in [
        r#"prefix: "team/cache/""#,
        r#"bucket: "my-bucket""#,
        "path_style: false",
        "credentials: Chain",
    ] {
        assert!(s.contains(part), "{part} in {s}");
    }
    let store = S3Store::from_url("s3://my-bucket/team/cache/?endpoint=http://h:2").expect("url");
    assert_eq!(
        store.to_string(),
        "s3 store http://h:2/my-bucket/team/cache/"
    );
}

#[test]
fn minio_urls_parse() {
    let url = "minio://h:1/bkt/p?tls=true&part_size=16MiB&trim_grace=60&region=eu-west-1";
    let s = shown(url);
    for part in [
        r#"endpoint: Some("https://h:1")"#,
        r#"bucket: "bkt""#,
        "path_style: true",
        "credentials: FromEnv",
        r#"region: Some("eu-west-1")"#,
    ] {
        assert!(s.contains(part), "{part} in {s}");
    }
    let b = S3StoreBuilder::from_url(url).expect("url");
    let store = b.with_credentials("AKID", "s3cr3t").build().expect("store");
    let settings = store.backend().settings();
    assert_eq!(settings.prefix, "p/");
    assert_eq!(settings.trim_grace, Duration::from_secs(60));
    assert_eq!(settings.part_size, 16 << 20);
    assert_eq!(store.to_string(), "s3 store https://h:1/bkt/p/");
    let s = shown("minio://h:1/bkt?tls=false");
    assert!(s.contains(r#"endpoint: Some("http://h:1")"#), "{s}");
}

#[test]
fn bad_urls_are_refused_and_secrets_never_shown() {
    let bad = ["s3://", "s3://Bad_Bucket/x", "minio://h:1", "gs://bkt"];
    urls_are_checked(S3StoreBuilder::from_url, "minio://h:1/bkt", "tls", &bad);
    unknown_parameters_are_refused(S3StoreBuilder::from_url, "minio://h:1/bkt");
    let b = S3StoreBuilder::new("bkt").with_credentials("AKID", "s3cr3t");
    let shown = format!("{b:?}\n{:?}", b.clone().build().expect("store"));
    assert!(
        shown.contains("AKID") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

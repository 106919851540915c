//! `opendal+SERVICE://` URLs and the environment: the options OpenDAL gets, larder's own keys,
//! what is refused, and services not compiled in (no server needed: building contacts nothing).

use std::time::Duration;

use larder_bucket::Bucket;
use larder_core::{Result, Store};
use larder_opendal::{BucketBuilder, OpendalStore, OpendalStoreBuilder};

fn parse(url: &str, env: &[(&str, &str)]) -> Result<OpendalStoreBuilder> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    OpendalStoreBuilder::from_url_and_env(url, env)
}

#[test]
fn webdav_url_maps_to_endpoint_and_root() {
    let b = parse(
        "opendal+webdav://127.0.0.1:8080/dav/team?tls=false&list=false&timeout_ms=500",
        &[("LARDER_OPENDAL_PASSWORD", "s3cret"), ("OTHER", "x")],
    )
    .expect("url");
    assert_eq!(b.scheme(), "webdav");
    assert_eq!(b.option("endpoint"), Some("http://127.0.0.1:8080"));
    assert_eq!(b.option("root"), Some("/dav/team"));
    assert_eq!(b.option("password"), Some("s3cret"));
    assert!(!format!("{b:?}").contains("s3cret"), "{b:?}");
    let store = b.build().expect("store");
    assert!(!store.capability().list);
    assert_eq!(
        store.to_string(),
        "opendal store opendal+webdav://127.0.0.1:8080/dav/team"
    );
    let settings = store.backend().settings();
    assert_eq!(settings.read_timeout, Duration::from_millis(500));
    assert_eq!(settings.request_timeout, Duration::from_millis(500));
    let b = parse("opendal+webdav://h/p", &[]).expect("url");
    assert_eq!(b.option("endpoint"), Some("https://h"));
}

#[test]
fn query_wins_over_env_and_shared_keys_are_larders() {
    let b = parse(
        "opendal+redis://127.0.0.1:6379/cache?db=2&trim_grace=60&retries=1",
        &[("LARDER_OPENDAL_DB", "1"), ("LARDER_OPENDAL_RETRIES", "5")],
    )
    .expect("url");
    assert_eq!(b.option("db"), Some("2"));
    assert_eq!(b.option("endpoint"), Some("redis://127.0.0.1:6379"));
    assert_eq!(b.option("root"), Some("/cache"));
    assert_eq!(
        b.option_names().collect::<Vec<_>>(),
        ["db", "endpoint", "root"]
    );
    let shown = format!("{b:?}");
    for setting in ["part_size: 2097152", "retries: 1", "trim_grace: 60s"] {
        assert!(shown.contains(setting), "{setting}: {shown}");
    }
}

#[test]
fn fs_and_azblob_shapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("opendal+fs://{}?concurrency=4", dir.path().display());
    let b = parse(&url, &[]).expect("url");
    let root = dir.path().display().to_string();
    assert_eq!(b.option("root"), Some(root.as_str()));
    let tmp = format!("{root}/.tmp");
    assert_eq!(b.option("atomic_write_dir"), Some(tmp.as_str()));
    let store: OpendalStore = b.build().expect("store");
    assert_eq!(store.backend().settings().concurrency, 4);
    let b = parse("opendal+azblob://acct.blob.core.windows.net/cont/a/b", &[]).expect("url");
    assert_eq!(b.option("container"), Some("cont"));
    assert_eq!(b.option("root"), Some("/a/b"));
    let endpoint = Some("https://acct.blob.core.windows.net");
    assert_eq!(b.option("endpoint"), endpoint);
}

#[test]
fn bad_urls_are_rejected() {
    let bad = [
        "opendal+webdav:///p",
        "opendal+webdav://user:pw@h/p",
        "opendal+fs://host/x",
    ];
    let bad = [&bad[..], &["opendal+fs:///", "webdav://h/p"]].concat();
    larder_bucket::testkit::urls_are_checked(
        |u| parse(u, &[]),
        "opendal+webdav://h/p",
        "list",
        &bad,
    );
}

#[test]
fn missing_services_name_their_feature() {
    let built = |url: &str| {
        let b = parse(url, &[]).expect("url");
        b.build().expect_err("not compiled in").to_string()
    };
    #[cfg(not(feature = "services-redis"))]
    assert!(built("opendal+redis://h:1/p").contains("`services-redis` feature"));
    let e = built("opendal+sftp://h/p");
    assert!(
        e.contains("services-sftp") && e.contains("no feature for it yet"),
        "{e}"
    );
    let e = OpendalStoreBuilder::new("nosuch")
        .build()
        .expect_err("no such service");
    assert!(e.to_string().contains("not an OpenDAL service"), "{e}");
}

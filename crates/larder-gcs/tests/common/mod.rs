//! What larder-gcs's tests share: a store builder pointed at a test fake-gcs-server, and plain
//! JSON API requests on the same server, to read and write objects behind the store's back.

#![allow(dead_code)]

use larder_gcs::{GcsStore, GcsStoreBuilder};
use larder_testservers::FakeGcs;

/// A builder for an anonymous store in `gcs`'s bucket, on its endpoint.
pub fn builder(gcs: &FakeGcs) -> GcsStoreBuilder {
    GcsStore::builder(gcs.bucket())
        .with_endpoint(gcs.endpoint())
        .with_anonymous(true)
}

/// A unique prefix per test run.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("t/{name}-{}-{nanos}", std::process::id())
}

fn client() -> reqwest_gcs::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest_gcs::Client::new()
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An object's bytes, `None` if absent.
pub async fn get_raw(gcs: &FakeGcs, name: &str) -> Option<Vec<u8>> {
    let url = format!(
        "{}/storage/v1/b/{}/o/{}?alt=media",
        gcs.endpoint(),
        gcs.bucket(),
        encode(name)
    );
    let resp = client().get(url).send().await.expect("raw get");
    if resp.status().as_u16() == 404 {
        return None;
    }
    assert!(
        resp.status().is_success(),
        "raw get {name}: {}",
        resp.status()
    );
    Some(resp.bytes().await.expect("raw body").to_vec())
}

/// Write an object with plain bytes (no metadata), overwriting.
pub async fn put_raw(gcs: &FakeGcs, name: &str, body: Vec<u8>) {
    let url = format!(
        "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
        gcs.endpoint(),
        gcs.bucket(),
        encode(name)
    );
    let resp = client().post(url).body(body).send().await.expect("raw put");
    assert!(
        resp.status().is_success(),
        "raw put {name}: {}",
        resp.status()
    );
}

//! The conformance suite against OpenDAL's `azblob` service and Azurite (Microsoft's Azure
//! Storage emulator, npm package `azurite`), started on a free loopback port with in-memory
//! storage and its documented development account. Skipped with a reason when `azurite-blob` is
//! missing, except under CI, where that fails (`cargo xtask test` installs it). Needs the
//! `services-azblob` feature.
#![cfg(feature = "services-azblob")]

mod common;

use common::azurite::Azurite;
use larder_bucket::testkit::conformance;
use larder_core::Store;

#[tokio::test(flavor = "multi_thread")]
async fn conformance_azblob_service_against_azurite() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    azurite.create_container("larder").await;
    let store = azurite.store("larder/conformance");
    assert!(store.backend().streams_blobs(), "azblob uploads blocks");
    let cap = store.capability();
    assert!(cap.list && cap.delete && cap.trim, "{cap:?}");
    conformance(store).await;
}

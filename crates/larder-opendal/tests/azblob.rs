//! The conformance suite (one trial per check, `azblob::…`) against OpenDAL's `azblob` service
//! and Azurite (Microsoft's Azure Storage emulator, npm package `azurite`), started on a free loopback port with in-memory
//! storage and its documented development account. Skipped with a reason when `azurite-blob` is
//! missing, except under CI, where that fails (`cargo xtask test` installs it). Needs the
//! `services-azblob` feature (`required-features` in Cargo.toml).

mod common;

use common::azurite::Azurite;
use larder_bucket::testkit::BucketHarness;
use larder_core::Store;
use larder_core::testkit::{Suites, Unavailable};

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("azblob", || async {
            let azurite =
                Azurite::start().ok_or(Unavailable("azurite-blob is not installed".into()))?;
            azurite.create_container("larder").await;
            let store = azurite.store("larder/conformance");
            assert!(
                store.backend().inner().streams_blobs(),
                "azblob uploads blocks"
            );
            let cap = store.capability();
            assert!(cap.list && cap.delete && cap.trim, "{cap:?}");
            Ok(BucketHarness::new(store).keep(azurite))
        })
        .run()
}

//! What the OpenDAL store's tests share: the trim checks, and Azurite for the azblob tests
//! (the conformance harness is larder-bucket's `testkit::conformance`).

#![allow(dead_code)]

#[cfg(feature = "services-azblob")]
pub mod azurite;
pub mod trim;

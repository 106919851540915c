//! The stand-in for a backend this build of larder was compiled without: it names the cargo
//! feature that brings the backend in.

use anyhow::{Result, bail};

use super::{Opened, StoreUrl};

/// Fail with the feature `url` needs.
pub(super) fn open(url: &StoreUrl, feature: &str) -> Result<Opened> {
    bail!(
        "store URL scheme `{}` needs larder built with the `{feature}` feature (cargo install larder-cli --features {feature})",
        url.scheme
    )
}

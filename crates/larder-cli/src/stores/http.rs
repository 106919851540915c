//! The HTTP client store (`larder-http`): a `larder serve` reached over its native protocol.

use std::sync::Arc;

use anyhow::{Context, Result};
use larder_http::HttpStore;

use super::{Opened, StoreUrl};
use crate::config::Config;

/// Open `http(s)://HOST:PORT[/PREFIX]`. A URL without a path means the server's default
/// native prefix, `/v1`. `LARDER_TOKEN` is sent as a bearer token (for servers that want one
/// to push); `LARDER_CA_FILE` names PEM CA certificates to trust besides the system's. The
/// remote time-out bounds every wait on the server: for an answer, for the next chunk of a
/// download, and for the server to take more of an upload.
pub(super) fn open(url: &StoreUrl, config: &Config) -> Result<Opened> {
    let base = native_base(&url.location);
    let mut builder = HttpStore::builder(base.clone()).read_timeout(config.remote_timeout.value);
    if let Some(token) = std::env::var("LARDER_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.bearer_token(token);
    }
    if let Some(ca) = std::env::var_os("LARDER_CA_FILE").filter(|c| !c.is_empty()) {
        let pem = std::fs::read(&ca).with_context(|| {
            format!(
                "cannot read LARDER_CA_FILE {}",
                std::path::Path::new(&ca).display()
            )
        })?;
        builder = builder.root_certificates_pem(pem);
    }
    let store = builder
        .build()
        .with_context(|| format!("cannot use the larder server at {base}"))?;
    Ok(Opened {
        store: Arc::new(store),
        local_dir: None,
        tiers: None,
        budget: None,
    })
}

/// `http://h:p` and `http://h:p/` → `http://h:p/v1`; any other path is kept (without a
/// trailing slash).
fn native_base(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    if after_scheme.contains('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1")
    }
}

#[cfg(test)]
mod tests {
    use super::native_base;

    #[test]
    fn bare_host_means_v1() {
        assert_eq!(native_base("http://cache:7180"), "http://cache:7180/v1");
        assert_eq!(native_base("http://cache:7180/"), "http://cache:7180/v1");
        assert_eq!(native_base("http://cache/team/v1/"), "http://cache/team/v1");
    }
}

//! Building an [`HttpStore`]: base URL, time-outs, retries.

use std::time::Duration;

use larder_core::{Error, Result};

use crate::backend::HttpStore;

/// A string kept out of `Debug` output (logs).
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"(hidden)\"")
    }
}

/// Builds an [`HttpStore`].
#[derive(Debug, Clone)]
pub struct HttpStoreBuilder {
    pub(crate) base_url: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) bearer_token: Option<Secret>,
    pub(crate) root_pem: Option<Vec<u8>>,
}

impl HttpStoreBuilder {
    /// A builder for the server whose native protocol is at `base_url`
    /// (e.g. `http://cache:8080/v1`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(100),
            bearer_token: None,
            root_pem: None,
        }
    }

    /// Time allowed to open a connection (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Longest wait for an answer to start, between two chunks of a blob download, and for
    /// the server to take more of an upload (default 60 s). Transfers as a whole are not
    /// bounded by time (they may be large and slow), only their stalls.
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = t;
        self
    }

    /// Time allowed for a whole small request (entries, find-missing, stats; default 60 s).
    /// Blob transfers are bounded by the read time-out only, as they may be large.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Retries after a temporary failure (default 3), the first after `backoff` (default
    /// 100 ms), doubling each time.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Send `Authorization: Bearer TOKEN` with every request (for a server started with
    /// `--auth-file`). Basic-auth credentials can instead go in the URL (`http://user:pw@host`).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(Secret(token.into()));
        self
    }

    /// Trust the CA certificates in `pem` for `https://`, besides the system's.
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_pem = Some(pem.into());
        self
    }

    /// Build the store.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a URL that is not `http://` or `https://`, an unusable
    /// token or CA file.
    pub fn build(self) -> Result<HttpStore> {
        if !self.base_url.starts_with("http://") && !self.base_url.starts_with("https://") {
            return Err(Error::invalid(format!(
                "{:?}: expected an http:// or https:// URL",
                self.base_url
            )));
        }
        HttpStore::from_builder(self)
    }
}

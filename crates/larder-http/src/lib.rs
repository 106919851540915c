//! Larder's HTTP client store: a [`Store`](larder_core::Store) over larder's native protocol,
//! as served by `larder-server` (protocol in `crates/larder-server/docs/protocol.md`).
//!
//! - Connections are pooled (one `reqwest` client per store) and bounded by time-outs.
//! - Requests with a replayable body are retried with exponential backoff on temporary errors
//!   only (connection failures, 429, 502, 503, 504); blob uploads stream the caller's chunks
//!   and are not retried, since the stream cannot be replayed.
//! - Blob bodies stream both ways; downloads are verified against their BLAKE3 digest as they
//!   stream, and a mismatch ends the stream with [`Error::Corrupt`](larder_core::Error::Corrupt).
//! - `http://` and `https://` (rustls, the system's CA certificates plus any given with
//!   [`HttpStoreBuilder::root_certificates_pem`]); a bearer token for servers that want one to
//!   push ([`HttpStoreBuilder::bearer_token`]), or basic-auth credentials in the URL.
//!
//! ```no_run
//! # async fn example() -> larder_core::Result<()> {
//! use larder_core::StoreExt;
//! let store = larder_http::HttpStore::new("http://127.0.0.1:8080/v1")?;
//! let stats = larder_core::Store::stats(&store).await?;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod error;

pub use backend::HttpStore;
pub use config::HttpStoreBuilder;

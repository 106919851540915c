//! Larder's HTTP cache server.
//!
//! One server, over one larder-fs directory, speaks several protocols, each below its own
//! prefix (see [`ServerConfig`]):
//! - larder's native protocol (`/v1`), used by the `larder-http` client store: entries, blobs,
//!   find-missing, stats (documented in `docs/protocol.md`);
//! - ccache's HTTP remote storage (`/ccache`), layouts `subdirs`, `flat` and `bazel`;
//! - Bazel's HTTP cache (`/bazel`), with SHA-256 checked on CAS uploads;
//! - a WebDAV tree (`/dav`), as sccache's WebDAV storage uses it;
//! - waf's wafcache netcache protocol (`/waf`);
//! - `/healthz`, `/metrics` (Prometheus) and `/status` (HTML, or JSON at `/status.json`).
//!
//! With an upstream store ([`ServerConfig::with_upstream`]), the server is a read-through
//! replica: misses are fetched upstream and kept, writes are queued durably for upload.
//!
//! While serving, a clean-up keeps the store within the configured budgets (size, entries,
//! free-disk head room); a write the disk cannot take is answered 507 and reads go on.
//!
//! Blobs stream to and from disk; no request holds a whole blob in memory.
//!
//! The serving path: a blob is verified once, then trusted while its file is unchanged. Blobs
//! are hashed as they are written; a read of a raw blob whose file still has the identity
//! (device, inode, length, modification and change times) it had when this server last
//! verified it is sent without hashing, in 2 MiB pieces mapped from the page cache; any other
//! read verifies as it streams, is never answered whole when wrong, and removes the blob. The
//! background scrub ([`Scrub`], on by default at 32 MiB/s) reads every blob back and removes
//! the damaged ones, which is what catches bytes changed underneath the file system (a failing
//! disk) in a trusted file; clients verify what they receive too (larder-http BLAKE3, Bazel
//! SHA-256). larder-fs's crate docs say exactly what a trusted read does not check. HTTP
//! responses go through hyper, whose body is a stream of buffers written to the socket, so
//! `sendfile` is not used: the mapped pages are copied once, into the socket (`sendfile` would
//! hand them over without that copy). `/metrics` counts trusted and verified reads
//! (`larder_blob_reads_total`) and the scrub (`larder_scrub_*`); `/status` shows the scrub's
//! progress.
//!
//! What runs where. [`Server::run`] runs on the caller's tokio runtime (the CLI's, with two
//! workers): the clean-up, the scrub, the upstream's upload workers and trims, and every call
//! to the upstream store. Connections are accepted and served on
//! [`Limits::connection_threads`] threads (one per CPU by default), each a single-threaded
//! runtime with its own accept loop on the listening socket: a new connection is taken by a
//! thread that is free, and the connection, its requests and the local store calls they make
//! stay on that thread, as connections stay in an nginx worker. That is what keeps a small keep-alive
//! request cheap: one thread reads it, answers it and writes the answer, with no hand-over
//! between threads (1 KiB keep-alive GETs at 64 connections on two cores take about a tenth
//! less CPU each than on one multi-threaded runtime with two workers). Blocking work
//! goes to the blocking pool of the connection's runtime. The bounds stay server-wide: one
//! connection semaphore, one drain signal on stop, one set of atomic metrics. The upstream
//! store's calls are made on the caller's runtime (the connection runtimes await them there),
//! because a network client's pooled connections are driven by the runtime that opened them,
//! and that runtime must be one that lives as long as the client.
//!
//! ```no_run
//! # async fn example() -> Result<(), larder_server::ServerError> {
//! use larder_server::{Server, ServerConfig};
//! let config = ServerConfig::new("/var/cache/larder", "127.0.0.1:0".parse().unwrap());
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod accept;
mod app;
mod auth;
pub mod bazel;
mod body;
pub mod ccache;
mod config;
mod conn;
mod dav;
mod disk;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod metrics;
mod multipart;
pub mod native;
mod runtimes;
mod server;
mod tls;
mod upstream;
mod value;
mod waf;

pub use auth::Access;
pub use config::{Limits, Scrub, ServerConfig};
pub use error::ServerError;
pub use server::{Server, serve};
pub use tls::TlsFiles;

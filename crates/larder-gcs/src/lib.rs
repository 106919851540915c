//! Larder's Google Cloud Storage store: a [`Store`](larder_core::Store) in a GCS bucket,
//! `gs://BUCKET/PREFIX`.
//!
//! - Credentials: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//!   user credentials, the metadata server). `LARDER_GCS_ANONYMOUS=1` (or `?anonymous=true`)
//!   sends none, for emulators and public buckets.
//! - Endpoint: Google's, or `LARDER_GCS_ENDPOINT` / `?endpoint=URL` (e.g. fake-gcs-server).
//!
//! Two ways in, and why:
//! - Google's official crate, `google-cloud-storage`, reads objects (streamed) and writes
//!   small ones (entries, records, blobs up to 8 MiB) in single-shot uploads; its
//!   resumable-upload threshold is raised past anything sent through it, since the emulator
//!   does not serve resumable sessions well.
//! - Listing and deleting objects exist only over gRPC in that crate, which no emulator
//!   serves; its single-shot upload also gathers the whole payload in memory. So metadata
//!   reads, listing, deletion, the copy that refreshes a blob, and uploads of blobs over 8 MiB
//!   are plain GCS JSON API requests (`/storage/v1`, `/upload/storage/v1`), made with the
//!   same reqwest client and the same credentials.
//!
//! Behaviour (as larder-s3's):
//! - Blobs are stored raw under `PREFIX/blobs/<blake3>`, entries under
//!   `PREFIX/entries/<storage name>` with their size, creation time and cost as custom
//!   metadata. Entries are written after their blobs.
//! - Large uploads stream the caller's bytes straight into the request (memory stays at one
//!   chunk); the last chunk is sent only once the bytes have hashed to the digest, so a wrong
//!   stream never becomes an object.
//! - Downloads stream and are verified against the BLAKE3 digest; a corrupt blob is deleted
//!   and read as [`Error::Corrupt`](larder_core::Error::Corrupt) (a miss for restores).
//! - Create-only entry writes use `ifGenerationMatch=0`.
//! - Temporary errors (time-outs, connection failures, 408, 429, 5xx) are retried with
//!   backoff; permanent ones are not. Errors are classified the same way for callers.
//! - Trimming (`larder trim --store gs://...`) is larder-bucket's, shared with larder-s3:
//!   access records, a lease, eviction by the configured policy, and a grace period before
//!   unreferenced blobs go. The entry's generation plays the part of S3's ETag. See
//!   `docs/remote-trim.md`.
//!
//! ```no_run
//! # fn example() -> larder_core::Result<()> {
//! let store = larder_gcs::GcsStore::from_url("gs://my-bucket/team-a")?;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod core;
mod error;
mod reader;
mod writer;

pub use backend::GcsStore;
pub use config::{ANONYMOUS_ENV, DEFAULT_ENDPOINT, ENDPOINT_ENV, GcsStoreBuilder};

//! Larder's Google Cloud Storage store: a [`Store`](larder_core::Store) in a GCS bucket,
//! `gs://BUCKET/PREFIX`.
//!
//! - Credentials: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//!   user credentials, the metadata server). `LARDER_GCS_ANONYMOUS=1` (or `?anonymous=true`)
//!   sends none, for emulators and public buckets.
//! - Endpoint: Google's, or `LARDER_GCS_ENDPOINT` / `?endpoint=URL` (e.g. fake-gcs-server).
//!
//! This crate supplies Cloud Storage's object primitives ([`GcsBucket`]), its configuration and
//! its error mapping; the store itself — layout, verification, refresh-on-reuse, access
//! records, remote trim — is [`larder_bucket::BucketStore`], shared with S3 and OpenDAL. What
//! is GCS's own:
//! - every request is a plain JSON API call, made with `google-cloud-auth`'s credentials (see
//!   `core.rs` for why not the official storage crate);
//! - listings carry entries' custom metadata (size, creation time, cost), so listing entries
//!   costs no request per entry;
//! - blobs above the part size (8 MiB) stream up as one multipart request whose body is the
//!   caller's stream: memory stays at one chunk, and a stream that fails verification cuts the
//!   request short, so no object appears;
//! - create-only entry writes use `ifGenerationMatch=0`; a trim deletes an entry only at the
//!   generation it listed (`ifGenerationMatch`); an old blob about to be reused is refreshed
//!   by a copy onto itself;
//! - temporary errors (time-outs, connection failures, 408, 429, 5xx) are retried with backoff;
//!   permanent ones are not. Errors are classified the same way for callers.
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

pub use backend::GcsBucket;
pub use config::{ANONYMOUS_ENV, DEFAULT_ENDPOINT, ENDPOINT_ENV, GcsStoreBuilder};
pub use larder_bucket::BucketBuilder;

/// A larder store in a Cloud Storage bucket.
pub type GcsStore = larder_bucket::BucketStore<GcsBucket>;

//! The Remote Execution API's cache services over gRPC, on larder's [`Store`].
//!
//! [`routes`] serves, below `/build.bazel.remote.execution.v2.*` and `/google.bytestream.*`:
//! - Capabilities: API versions 2.0 to 2.3, SHA-256 and BLAKE3, zstd, `update_enabled` exactly
//!   when the caller may write, and `max_batch_total_size_bytes` equal to what the batch calls
//!   accept (the gRPC message limit is set to match).
//! - ContentAddressableStorage: FindMissingBlobs (refreshing what it finds), BatchUpdateBlobs
//!   (each blob verified; a wrong digest is INVALID_ARGUMENT with nothing stored),
//!   BatchReadBlobs, GetTree (paged).
//! - ByteStream: Read (`[{instance}/]blobs/[{function}/]{hash}/{size}`, with `read_offset` and
//!   `read_limit`, streamed in messages of up to 2 MiB that carry the store's chunks without a
//!   copy, see `read_body`) and Write (`[{instance}/]uploads/{uuid}/blobs/...`:
//!   spooled to a temporary file while hashed, on a blocking thread as the next request
//!   arrives, resumable at the committed offset, finished early when the blob exists; the
//!   finished file is handed to the store as a `VerifiedFile`, which a store with local files
//!   renames into place instead of copying and hashing it again; a whole blob in one request
//!   is checked and stored from memory), QueryWriteStatus; both also as
//!   `compressed-blobs/zstd/...`
//!   (reads send one zstd frame per chunk; writes are decompressed as they arrive, never more
//!   than the digest's size).
//! - ActionCache: GetActionResult answers NOT_FOUND unless every blob the result names (output
//!   files, every file of each output tree, stdout, stderr) is present, and inlines what was
//!   asked within the message limit; UpdateActionResult validates the result.
//!
//! - Remote Asset Fetch and Push: URIs and qualifiers name CAS blobs and directories per
//!   instance; Fetch serves what was pushed (never downloads), when it is all in the CAS.
//!
//! - gRPC health checking (`grpc.health.v1.Health`).
//!
//! The CAS and action cache use the [`layout`] of larder-server's Bazel HTTP cache, so a blob
//! uploaded over HTTP `/cas/` is found and read over gRPC and the other way round. The CAS is
//! shared by every instance name; action results are kept per instance. SHA-256 objects are
//! standalone blobs under their own digests where the store holds them (larder-fs does; a
//! server whose tiers include a queued upstream or a store that cannot keeps them as entries),
//! and objects an older cache holds as entries are still found.
//!
//! # Costs and limits
//! - FindMissingBlobs, the action cache's completeness check and Remote Asset's ask the store
//!   in bulk: standalone SHA-256 blobs in one
//!   [`Store::find_missing`](larder_core::Store::find_missing) (larder-fs: one `stat` per
//!   digest), then whatever was not found in one
//!   [`Store::find_missing_entries`](larder_core::Store::find_missing_entries) for its entry
//!   (larder-fs: one `stat` per CAS entry, no read or decode). Both record what they find as
//!   accessed (which refreshes it for the clean-up) without counting hits. Existence only: the
//!   size a digest names is checked when the object is read.
//! - Uploads are verified once as they arrive (SHA-256 or BLAKE3 of the bytes), and again by
//!   the store as it writes the blob (its own digest); reads stream the store's verified
//!   chunks.
//! - A write that the disk cannot take fails with RESOURCE_EXHAUSTED; reads go on. An
//!   [`Admission`] is asked first (the server cleans up when it can).
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod ac;
mod asset;
mod bytestream;
mod cas;
pub mod digest;
mod error;
pub mod fuzz;
pub mod layout;
mod read_body;
mod services;

use std::path::PathBuf;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::asset::v1::{
    fetch_server::FetchServer, push_server::PushServer,
};
use bazel_remote_apis::build::bazel::remote::execution::v2::{
    action_cache_server::ActionCacheServer, capabilities_server::CapabilitiesServer,
    content_addressable_storage_server::ContentAddressableStorageServer,
};
use larder_core::Store;
use tonic::Status;

/// The generated protocol code (REv2, Remote Asset, ByteStream), for clients and tests.
pub use bazel_remote_apis as proto;
pub use digest::DigestFn;
/// The protobuf runtime of [`proto`].
pub use prost;
/// The gRPC runtime of [`proto`] (its clients connect with `tonic::transport::Channel`).
pub use tonic;

/// The default `max_batch_total_size_bytes`: 4 MiB, gRPC's customary message size.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 4 << 20;

/// Room in a message beyond its blob bytes (digests, statuses, framing).
const MESSAGE_OVERHEAD: usize = 1 << 20;

/// What a caller may do, as an [`Authorizer`] judges its request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Allowed.
    Granted,
    /// No credentials where they are needed: UNAUTHENTICATED.
    Unauthenticated,
    /// Credentials that are not accepted: PERMISSION_DENIED.
    Denied,
}

/// Decides from a request's headers (gRPC metadata) whether it may read or write.
pub trait Authorizer: Send + Sync + std::fmt::Debug + 'static {
    /// Whether a request with `headers` may write (`write`) or read.
    fn check(&self, headers: &axum::http::HeaderMap, write: bool) -> Permission;
}

/// Decides whether the disk can take a write of some bytes (cleaning up first, say).
pub trait Admission: Send + Sync + std::fmt::Debug + 'static {
    /// Whether a write of `bytes` more bytes may go ahead.
    fn room_for(&self, bytes: u64) -> futures::future::BoxFuture<'_, bool>;
}

/// How the services behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// A directory on the store's filesystem for spooling ByteStream uploads.
    pub tmp_dir: PathBuf,
    /// The most blob bytes one batch call may carry (and the advertised
    /// `max_batch_total_size_bytes`).
    pub max_batch_bytes: u64,
    /// The largest blob accepted (`None`: no bound).
    pub max_blob_bytes: Option<u64>,
    /// Refuse every write.
    pub read_only: bool,
    /// Who may read and write (`None`: everyone).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// Asked before a blob is received (`None`: every write may try).
    pub admission: Option<Arc<dyn Admission>>,
}

impl Options {
    /// Defaults: batches of [`DEFAULT_MAX_BATCH_BYTES`], no blob bound, writable, open to all.
    pub fn new(tmp_dir: impl Into<PathBuf>) -> Options {
        Options {
            tmp_dir: tmp_dir.into(),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_blob_bytes: None,
            read_only: false,
            authorizer: None,
            admission: None,
        }
    }

    /// Set the batch limit.
    pub fn with_max_batch_bytes(mut self, bytes: u64) -> Options {
        self.max_batch_bytes = bytes;
        self
    }

    /// Set the largest blob accepted.
    pub fn with_max_blob_bytes(mut self, bytes: Option<u64>) -> Options {
        self.max_blob_bytes = bytes;
        self
    }

    /// Refuse writes.
    pub fn with_read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Ask `admission` before receiving blobs.
    pub fn with_admission(mut self, admission: Arc<dyn Admission>) -> Options {
        self.admission = Some(admission);
        self
    }

    /// Check credentials with `authorizer`.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Options {
        self.authorizer = Some(authorizer);
        self
    }
}

/// What every service shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) cas: cas::Cas,
    pub(crate) opts: Options,
    pub(crate) uploads: bytestream::Uploads,
}

impl Ctx {
    /// The gRPC message limit matching the batch limit.
    pub(crate) fn message_limit(&self) -> usize {
        usize::try_from(self.opts.max_batch_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(MESSAGE_OVERHEAD)
    }

    /// Whether a request with `meta` may write (or read).
    pub(crate) fn permission(
        &self,
        meta: &tonic::metadata::MetadataMap,
        write: bool,
    ) -> Permission {
        if write && self.opts.read_only {
            return Permission::Denied;
        }
        match &self.opts.authorizer {
            None => Permission::Granted,
            Some(a) => a.check(&meta.clone().into_headers(), write),
        }
    }

    /// RESOURCE_EXHAUSTED when the disk cannot take `bytes` more (received, then stored).
    pub(crate) async fn admit(&self, bytes: u64) -> Result<(), Status> {
        match &self.opts.admission {
            Some(a) if !a.room_for(bytes).await => Err(Status::resource_exhausted(format!(
                "no room on the disk for {bytes} more bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuse a request that may not read (`write == false`) or write.
    pub(crate) fn require(
        &self,
        meta: &tonic::metadata::MetadataMap,
        write: bool,
    ) -> Result<(), Status> {
        let what = if write { "write" } else { "read" };
        match self.permission(meta, write) {
            Permission::Granted => Ok(()),
            Permission::Unauthenticated => Err(Status::unauthenticated(format!(
                "credentials needed to {what}: `authorization: Bearer TOKEN` metadata"
            ))),
            Permission::Denied if write && self.opts.read_only => {
                Err(Status::permission_denied("the server is read-only"))
            }
            Permission::Denied => Err(Status::permission_denied(format!(
                "these credentials may not {what}"
            ))),
        }
    }
}

/// The gRPC services as tonic routes (to serve with tonic's own server, say).
pub fn grpc_routes(store: Arc<dyn Store>, options: Options) -> tonic::service::Routes {
    let ctx = Arc::new(Ctx {
        cas: cas::Cas {
            store,
            tmp_dir: options.tmp_dir.clone(),
        },
        uploads: bytestream::Uploads::default(),
        opts: options,
    });
    let limit = ctx.message_limit();
    let svc = Arc::new(services::Services(Arc::clone(&ctx)));
    let asset = Arc::new(asset::AssetService(Arc::clone(&ctx)));
    // No fallback: the routes merge into a router that has its own.
    tonic::service::Routes::from(axum::Router::new())
        .add_service(CapabilitiesServer::from_arc(Arc::clone(&svc)))
        .add_service(
            ContentAddressableStorageServer::from_arc(Arc::clone(&svc))
                .max_decoding_message_size(limit),
        )
        .add_service(
            ActionCacheServer::from_arc(Arc::new(ac::ActionCacheService(Arc::clone(&ctx))))
                .max_decoding_message_size(limit),
        )
        .add_service(read_body::ByteStreamRoutes::new(
            Arc::new(bytestream::ByteStreamService(Arc::clone(&ctx))),
            limit,
        ))
        .add_service(FetchServer::from_arc(Arc::clone(&asset)))
        .add_service(PushServer::from_arc(asset))
        // grpc.health.v1: the server as a whole ("") is SERVING while it answers.
        .add_service(tonic_health::server::health_reporter().1)
}

/// The gRPC services as an axum router, to merge into a server's router that speaks HTTP/2.
pub fn routes(store: Arc<dyn Store>, options: Options) -> axum::Router {
    grpc_routes(store, options).into_axum_router()
}

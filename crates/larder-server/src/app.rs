//! The router: one sub-router per protocol, nested under its configured prefix.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::body::{Reservations, Spooled, check_size, content_length, spool};
use crate::disk::Cleaner;
use crate::metrics::{self, Metrics};
use larder_core::{ByteStream, Store};

use crate::config::ServerConfig;
use crate::error::{ApiError, ApiResult};
use crate::{bazel, ccache, dav, native, waf};

/// What every handler shares: one `Arc`, so that the per-request clones the router and its
/// middleware make cost one atomic increment.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    /// The shared parts, for rebuilding the state before serving starts.
    pub(crate) fn take_shared(self) -> Shared {
        match Arc::try_unwrap(self.0) {
            Ok(shared) => shared,
            Err(arc) => Shared {
                store: Arc::clone(&arc.store),
                config: Arc::clone(&arc.config),
                tmp_dir: Arc::clone(&arc.tmp_dir),
                metrics: Arc::clone(&arc.metrics),
                cleaner: Arc::clone(&arc.cleaner),
                replica: arc.replica.clone(),
                reservations: Arc::clone(&arc.reservations),
                entry_slots: Arc::clone(&arc.entry_slots),
                local: arc.local.clone(),
                scrub: arc.scrub.clone(),
            },
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The shared parts of [`AppState`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<ServerConfig>,
    /// Where request bodies are spooled (on the store's filesystem).
    pub(crate) tmp_dir: Arc<PathBuf>,
    /// What the server counts.
    pub(crate) metrics: Arc<Metrics>,
    /// The disk clean-up.
    pub(crate) cleaner: Arc<Cleaner>,
    /// Upload and fetch counters, when replicating an upstream store.
    pub(crate) replica: Option<Arc<crate::upstream::ReplicaCounters>>,
    /// Disk space reserved for uploads in flight.
    pub(crate) reservations: Arc<Reservations>,
    /// Turns to decode or encode a native entry (see [`Limits::entry_codec_slots`]).
    ///
    /// [`Limits::entry_codec_slots`]: crate::Limits::entry_codec_slots
    pub(crate) entry_slots: Arc<tokio::sync::Semaphore>,
    /// The directory store under the layers, when the server opened it itself (its blob reads
    /// and scrub are shown in the metrics).
    pub(crate) local: Option<Arc<larder_fs::FsStore>>,
    /// The background scrub's progress, when it runs.
    pub(crate) scrub: Option<Arc<larder_fs::ScrubProgress>>,
}

impl Shared {
    /// Refuse a write on a read-only server.
    pub(crate) fn check_writable(&self) -> ApiResult<()> {
        if self.config.read_only {
            Err(ApiError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Admit a write of `declared` bytes (when known): refuse it on a read-only server, and
    /// with 507 when the disk has no room for it even after a clean-up.
    pub(crate) async fn admit_write(&self, declared: Option<u64>) -> ApiResult<()> {
        self.check_writable()?;
        if self.cleaner.room_for(declared).await {
            Ok(())
        } else {
            Err(ApiError::OutOfSpace(format!(
                "no room on the disk for {} more bytes",
                declared.unwrap_or(0)
            )))
        }
    }

    /// Receive a value that is stored as one entry (ccache, Bazel, WebDAV): refuse a declared
    /// size over `--max-blob-size` (`what` names it), or the write when the disk has no room for
    /// it twice (spooled, then stored); then spool the body, also hashing it with SHA-256 when
    /// `sha256`.
    pub(crate) async fn receive_value(
        &self,
        what: &str,
        headers: &HeaderMap,
        body: ByteStream,
        sha256: bool,
    ) -> ApiResult<Spooled> {
        let limit = self.config.max_blob_bytes;
        let declared = content_length(headers)?;
        check_size(what, declared, limit)?;
        self.admit_write(declared.map(|d| d.saturating_mul(2)))
            .await?;
        let expected = declared.map(|d| (d, &self.reservations));
        spool(body, limit, sha256, &self.tmp_dir, expected).await
    }
}

/// The route `path` (starting with `/`) below `prefix`, joined as a nested router would.
pub(crate) fn below(prefix: &str, path: &str) -> String {
    match prefix.strip_suffix('/') {
        Some(prefix) => format!("{prefix}{path}"),
        None => format!("{prefix}{path}"),
    }
}

/// The whole application.
pub(crate) fn router(state: AppState) -> Router {
    let cfg = Arc::clone(&state.config);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::prometheus))
        .route("/status", get(metrics::status))
        .route("/status.json", get(metrics::status_json))
        // Merged at their full paths rather than nested: a nested router rewrites each
        // request's URI below its prefix, which these handlers (path extractors only) do not
        // need. WebDAV reads the path below its prefix from the URI, so it stays nested.
        .merge(native::router(&cfg.native_prefix))
        .merge(ccache::router(&cfg.ccache_prefix))
        .merge(bazel::router(&cfg.bazel_prefix))
        .nest(&cfg.dav_prefix, dav::router())
        // `PREFIX/` (the root collection, which WebDAV clients ask about) is not matched by
        // the nested router.
        .route(
            &format!("{}/", cfg.dav_prefix),
            axum::routing::any(dav::root),
        )
        .merge(waf::router(&cfg.waf_prefix))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state.clone())
        // gRPC (REAPI v2 and ByteStream) below its service paths, after the HTTP middleware:
        // its reads are POSTs too, so it checks credentials itself and answers gRPC statuses.
        // Its own middleware counts its calls and their latency.
        .merge(
            larder_reapi::routes(Arc::clone(&state.store), grpc_options(&state)).layer(
                axum::middleware::from_fn_with_state(state.clone(), metrics::track_grpc),
            ),
        )
}

/// How the gRPC services share the server's settings: its spool directory, blob bound,
/// read-only flag and credentials.
fn grpc_options(state: &AppState) -> larder_reapi::Options {
    let cfg = &state.config;
    let mut options = larder_reapi::Options::new(state.tmp_dir.join("grpc"))
        .with_max_blob_bytes(cfg.max_blob_bytes)
        .with_read_only(cfg.read_only)
        .with_admission(Arc::new(GrpcRoom(Arc::clone(&state.cleaner))));
    if cfg.access.enabled() {
        options = options.with_authorizer(Arc::new(GrpcAccess(cfg.access.clone())));
    }
    options
}

/// gRPC writes ask the disk clean-up for room, as HTTP writes do.
#[derive(Debug)]
struct GrpcRoom(Arc<Cleaner>);

impl larder_reapi::Admission for GrpcRoom {
    fn room_for(&self, bytes: u64) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(self.0.room_for(Some(bytes)))
    }
}

/// The `--auth-file` credentials, judged for gRPC calls as for HTTP requests: a write is any
/// method but a read, and a read needs credentials only when anonymous reads are off.
#[derive(Debug)]
struct GrpcAccess(crate::auth::Access);

impl larder_reapi::Authorizer for GrpcAccess {
    fn check(&self, headers: &HeaderMap, write: bool) -> larder_reapi::Permission {
        let mut probe = axum::extract::Request::new(axum::body::Body::empty());
        *probe.method_mut() = if write {
            axum::http::Method::PUT
        } else {
            axum::http::Method::GET
        };
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            probe
                .headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        match crate::auth::refusal(&self.0, &probe) {
            None => larder_reapi::Permission::Granted,
            Some(_) if headers.contains_key(header::AUTHORIZATION) => {
                larder_reapi::Permission::Denied
            }
            Some(_) => larder_reapi::Permission::Unauthenticated,
        }
    }
}

/// A 200 (or other status) response streaming `body` of `size` bytes.
pub(crate) fn sized_response(status: StatusCode, size: u64, body: axum::body::Body) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

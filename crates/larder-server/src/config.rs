//! The server's configuration: where it stores, where it listens, which prefixes it serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use larder_core::{Store, TrimOptions};

use crate::auth::Access;
use crate::tls::TlsFiles;

/// How a [`Server`](crate::Server) is set up.
///
/// Prefixes are absolute URL paths without a trailing slash (`/v1`); each protocol is served
/// below its own prefix, and clients may add their own sub-path below it (a ccache layout, a
/// Bazel instance name).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The larder-fs directory the server stores into.
    pub dir: PathBuf,
    /// The address to listen on; port 0 picks a free port (see [`Server::local_addr`](crate::Server::local_addr)).
    pub listen: SocketAddr,
    /// Prefix of larder's own protocol (default `/v1`).
    pub native_prefix: String,
    /// Prefix of ccache's HTTP remote storage (default `/ccache`).
    pub ccache_prefix: String,
    /// Prefix of Bazel's HTTP cache (default `/bazel`).
    pub bazel_prefix: String,
    /// Prefix of the WebDAV tree sccache uses (default `/dav`).
    pub dav_prefix: String,
    /// Prefix of waf's wafcache netcache protocol (default `/waf`).
    pub waf_prefix: String,
    /// Budgets the server keeps the store within while serving: size, entries and free-disk
    /// head room (when free space drops under `min_free_bytes`, evict until `max_free_bytes`).
    pub budget: TrimOptions,
    /// How often the clean-up checks the budgets (it also runs when writes bring free space
    /// under the head room).
    pub cleanup_interval: Duration,
    /// Largest blob or value accepted, in bytes; larger uploads are answered 413.
    pub max_blob_bytes: Option<u64>,
    /// Refuse every write (PUT, DELETE, POST that changes state) with 403.
    pub read_only: bool,
    /// Refuse native entry pushes that none of these ed25519 keys signed, with 403 (default:
    /// none, every push is taken). Other protocols' namespaces are exempt: their clients cannot
    /// sign.
    pub trust_require: Vec<larder_core::layer::PublicKey>,
    /// Who may push, and whether reads are anonymous (default: everyone may do anything).
    pub access: Access,
    /// A store to replicate: local misses are fetched from it, local writes uploaded to it.
    pub upstream: Option<Arc<dyn Store>>,
    /// Concurrent uploads to the upstream store.
    pub upload_workers: usize,
    /// The upstream store's own budget (`?max-size=`/`?max-entries=` on its URL): the server
    /// trims the upstream to it every `upstream_trim_interval` (several servers sharing a
    /// bucket take turns through the bucket's trim lock). Unset: the upstream is not trimmed.
    pub upstream_budget: TrimOptions,
    /// How often the upstream is trimmed to `upstream_budget` (the first trim one interval
    /// after start: a remote trim lists the whole bucket).
    pub upstream_trim_interval: Duration,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The eviction order of the clean-up (default: the store's native LRU).
    pub eviction: Option<Arc<dyn larder_core::eviction::EvictionPolicy>>,
    /// Asked before every entry is stored; refused entries are skipped (default: admit all).
    pub admission: Option<Arc<dyn larder_core::admission::AdmissionPolicy>>,
    /// Record every lookup and store into this access trace (default: none).
    pub trace: Option<Arc<larder_core::trace::TraceLog>>,
    /// What one request or connection may hold, and how many connections there may be.
    pub limits: Limits,
    /// The background scrub of the store's blobs (see [`Scrub`]).
    pub scrub: Scrub,
}

/// The background scrub: every stored blob read back and hashed at a bounded rate, the damaged
/// ones removed (see larder-fs's `FsStore::scrub`). It is what still looks at the bytes of the
/// blobs that reads send unhashed (their files unchanged since they were verified), and, after
/// a restart, what makes them trusted again. Only for the server's own directory store
/// ([`Server::bind`](crate::Server::bind)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Scrub {
    /// Bytes (as stored) read per second at most; `None` turns the scrub off (default 32 MiB/s,
    /// about 1% of a core for the hash here).
    pub rate: Option<u64>,
    /// A pass starts this long after the previous one started, or when it ends if it took
    /// longer (default 1 hour); the first starts with the server.
    pub interval: Duration,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub {
            rate: Some(32 << 20),
            interval: Duration::from_secs(3600),
        }
    }
}

impl Scrub {
    /// A scrub at `rate` (`None`: off) that starts a pass every `interval`.
    pub fn at(rate: Option<u64>, interval: Duration) -> Scrub {
        Scrub { rate, interval }
    }

    /// No scrub.
    pub fn off() -> Scrub {
        Scrub {
            rate: None,
            ..Scrub::default()
        }
    }
}

/// Bounds on what clients can make the server hold: connections, time, memory and disk.
///
/// Every bound has a default that a healthy client never meets; when one trips, the server
/// counts it in `/metrics` (`larder_limit_trips_total{limit="..."}`) and logs it at debug level
/// (the connection limit at warn level, once a second at most).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Connections served at once; one more is answered 503 and closed (default 1024, lowered
    /// at start to what the open-files limit allows).
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and, on HTTP/1.1, to start its next
    /// request on a kept-alive connection) before the connection is closed (default 15 s).
    pub header_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is closed (HTTP/1.1
    /// and HTTP/2; default 60 s). A response the client stops reading for this long also ends
    /// its connection.
    pub idle_timeout: Duration,
    /// Slowest accepted upload, in bytes per second on average once [`upload_grace`] has passed
    /// (default 1 KiB/s; 0 turns it off). A slower body fails, which ends the request and
    /// releases what it held (its spool file and disk reservation).
    ///
    /// [`upload_grace`]: Limits::upload_grace
    pub min_upload_rate: u64,
    /// How long an upload may take before [`min_upload_rate`](Limits::min_upload_rate) applies
    /// (default 10 s).
    pub upload_grace: Duration,
    /// After the stop signal, how long requests in flight may take before their connections are
    /// cut (default 30 s).
    pub shutdown_timeout: Duration,
    /// Disk space reserved up front (`fallocate`) for uploads that declare their length, in
    /// total over the uploads in flight (default 4 GiB). An upload that would pass it is
    /// received without a reservation.
    pub max_reserved_bytes: u64,
    /// Largest native entry accepted (default 16 MiB, at most larder-core's own bound).
    pub max_entry_bytes: u64,
    /// Most outputs in a native entry accepted or sent (default 100 000).
    pub max_entry_outputs: usize,
    /// Native entries decoded or encoded at once, on blocking threads (default: the number of
    /// CPUs); more wait their turn, so memory stays bounded by this times an entry's cost.
    pub entry_codec_slots: usize,
    /// Multipart (waf) bodies: bytes allowed before the first boundary (default 16 KiB).
    pub multipart_preamble_bytes: u64,
    /// Multipart bodies: the largest part header block (default 16 KiB).
    pub multipart_header_bytes: u64,
    /// Multipart bodies: the most parts (default 16).
    pub multipart_parts: usize,
    /// Threads that serve connections, each with a single-threaded runtime of its own (default:
    /// the number of CPUs; at least 1). See the crate docs for what runs where.
    pub connection_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            min_upload_rate: 1024,
            upload_grace: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            max_reserved_bytes: 4 << 30,
            max_entry_bytes: 16 << 20,
            max_entry_outputs: 100_000,
            entry_codec_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            multipart_preamble_bytes: 16 << 10,
            multipart_header_bytes: 16 << 10,
            multipart_parts: 16,
            connection_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl ServerConfig {
    /// A configuration serving `dir` on `listen` with the default prefixes, no size bound and
    /// writes allowed.
    pub fn new(dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            dir: dir.into(),
            listen,
            native_prefix: "/v1".into(),
            ccache_prefix: "/ccache".into(),
            bazel_prefix: "/bazel".into(),
            dav_prefix: "/dav".into(),
            waf_prefix: "/waf".into(),
            budget: TrimOptions::default(),
            cleanup_interval: Duration::from_secs(30),
            max_blob_bytes: None,
            read_only: false,
            trust_require: Vec::new(),
            access: Access::open(),
            upstream: None,
            upload_workers: 4,
            upstream_budget: TrimOptions::default(),
            upstream_trim_interval: Duration::from_secs(3600),
            tls: None,
            eviction: None,
            admission: None,
            trace: None,
            limits: Limits::default(),
            scrub: Scrub::default(),
        }
    }

    /// Set the background scrub's rate and interval (see [`Scrub`]).
    pub fn with_scrub(mut self, scrub: Scrub) -> Self {
        self.scrub = scrub;
        self
    }

    /// Set the bounds on connections and requests (see [`Limits`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Set the largest accepted blob or value.
    pub fn with_max_blob_bytes(mut self, limit: Option<u64>) -> Self {
        self.max_blob_bytes = limit;
        self
    }

    /// Refuse writes.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Refuse native entry pushes that none of `keys` signed (see
    /// [`larder_core::layer::trust`]).
    pub fn with_trust_require(mut self, keys: Vec<larder_core::layer::PublicKey>) -> Self {
        self.trust_require = keys;
        self
    }

    /// Set the native protocol's prefix.
    pub fn with_native_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.native_prefix = prefix.into();
        self
    }

    /// Set the ccache protocol's prefix.
    pub fn with_ccache_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ccache_prefix = prefix.into();
        self
    }

    /// Set the Bazel protocol's prefix.
    pub fn with_bazel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.bazel_prefix = prefix.into();
        self
    }

    /// Set the WebDAV prefix.
    pub fn with_dav_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.dav_prefix = prefix.into();
        self
    }

    /// Set the wafcache netcache prefix.
    pub fn with_waf_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.waf_prefix = prefix.into();
        self
    }

    /// Keep the store within `budget` while serving (its `dry_run` and `wait_for_lock` are
    /// ignored).
    pub fn with_budget(mut self, budget: TrimOptions) -> Self {
        self.budget = budget;
        self
    }

    /// Set how often the clean-up checks the budgets.
    pub fn with_cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval;
        self
    }

    /// Require credentials from `access` for writes (and for reads when its anonymous reads
    /// are off).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Replicate `upstream` with `workers` concurrent uploads (see the crate docs).
    pub fn with_upstream(mut self, upstream: Arc<dyn Store>, workers: usize) -> Self {
        self.upstream = Some(upstream);
        self.upload_workers = workers.max(1);
        self
    }

    /// Trim the upstream store to `budget` every `interval` (see
    /// [`ServerConfig::upstream_budget`]).
    pub fn with_upstream_budget(mut self, budget: TrimOptions, interval: Duration) -> Self {
        self.upstream_budget = budget;
        self.upstream_trim_interval = interval;
        self
    }

    /// Serve HTTPS (see [`TlsFiles`]).
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Evict with `policy` (a WebAssembly policy, say) instead of LRU.
    pub fn with_eviction(mut self, policy: Arc<dyn larder_core::eviction::EvictionPolicy>) -> Self {
        self.eviction = Some(policy);
        self
    }

    /// Ask `policy` before storing each entry (a WebAssembly policy, say); refused entries are
    /// not stored, and counted in the metrics.
    pub fn with_admission(
        mut self,
        policy: Arc<dyn larder_core::admission::AdmissionPolicy>,
    ) -> Self {
        self.admission = Some(policy);
        self
    }

    /// Record lookups and stores into `trace` (see [`larder_core::trace`]).
    pub fn with_trace(mut self, trace: Arc<larder_core::trace::TraceLog>) -> Self {
        self.trace = Some(trace);
        self
    }
}

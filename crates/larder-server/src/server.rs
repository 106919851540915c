//! Binding and running the server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use larder_core::Store;
use larder_core::layer::{Admission, Trusted};
use larder_fs::{FsConfig, FsStore, ScrubProgress};
use tokio::net::TcpListener;

use crate::app::{AppState, Shared, router};
use crate::config::ServerConfig;
use crate::disk::Cleaner;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::runtimes::OnRuntime;
use crate::upstream::Replica;

/// The key namespaces of the protocols whose clients cannot sign (ccache, Bazel and REAPI,
/// WebDAV, waf): pushes there are taken unsigned even when trust is required. Larder clients
/// that require a signature still refuse unsigned entries wherever they read them.
const UNSIGNED_NAMESPACES: &[&str] = &[
    "ccache/",
    "bazel-cas/",
    "bazel-cas-blake3/",
    "bazel-ac/",
    "bazel-ac-blake3/",
    "dav/",
    "waf/",
];

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    /// The exclusive lock on `DIR/server.lock`, held while the server lives.
    _lock: std::fs::File,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
}

impl Server {
    /// Open the larder-fs store in `config.dir` and bind `config.listen`.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the directory cannot be opened, [`ServerError::Bind`] when
    /// the address cannot be bound, [`ServerError::Prefix`] for a bad prefix.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let dir = config.dir.clone();
        // Entries are read no larger than the server takes them, whoever wrote them.
        // With an upstream, a write acknowledged is also a promise to upload it later: its queue
        // file is synced before the answer, and so are its entry and blobs, or a power loss
        // could leave a queue file naming an entry that is gone (an upload then dropped as if
        // the entry had been evicted).
        let fs_config = FsConfig::default()
            .with_fsync(config.upstream.is_some())
            .with_max_blob_bytes(config.max_blob_bytes)
            .with_max_entry_bytes(config.limits.max_entry_bytes)
            .with_eviction(config.eviction.clone())
            .with_trace(config.trace.clone());
        let store = tokio::task::spawn_blocking(move || FsStore::open(&dir, fs_config))
            .await
            .map_err(|e| ServerError::Store {
                dir: config.dir.display().to_string(),
                source: larder_core::Error::invalid(format!("opening task failed: {e}")),
            })?
            .map_err(|source| ServerError::Store {
                dir: config.dir.display().to_string(),
                source,
            })?;
        let fs = Arc::new(store);
        let local: Arc<dyn Store> = Arc::clone(&fs) as Arc<dyn Store>;
        let mut counters = None;
        let store = match &config.upstream {
            Some(upstream) => {
                // Its clients' pooled connections stay on this runtime (see crate::runtimes).
                let upstream: Arc<dyn Store> = Arc::new(OnRuntime::new(
                    Arc::clone(upstream),
                    tokio::runtime::Handle::current(),
                ));
                let replica = Replica::start(
                    local,
                    upstream,
                    &config.dir,
                    config.upload_workers,
                    &config.upstream_budget,
                )
                .map_err(|source| ServerError::Store {
                    dir: config.dir.display().to_string(),
                    source,
                })?;
                counters = Some(Arc::clone(&replica.counters));
                replica.store as Arc<dyn Store>
            }
            None => local,
        };
        let scrub = config.scrub.rate.map(|_| ScrubProgress::new());
        let mut server = Server::bind_with_store(config, store).await?;
        server.state = AppState::new(Shared {
            replica: counters,
            local: Some(fs),
            scrub,
            ..server.state.take_shared()
        });
        Ok(server)
    }

    /// Serve `store` instead of a larder-fs store in `config.dir` (which still holds the
    /// server's spool files).
    ///
    /// `store` is called from the connection runtimes (see the crate docs): a store whose
    /// network client pools connections should make its calls on one runtime that outlives
    /// them, as [`Server::bind`] does for the upstream store.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub async fn bind_with_store(
        config: ServerConfig,
        store: Arc<dyn Store>,
    ) -> Result<Server, ServerError> {
        let prefixes = [
            &config.native_prefix,
            &config.ccache_prefix,
            &config.bazel_prefix,
            &config.dav_prefix,
            &config.waf_prefix,
        ];
        for p in prefixes {
            let distinct = prefixes.iter().filter(|q| **q == p).count() == 1;
            if !p.starts_with('/') || p.ends_with('/') || p.len() < 2 || !distinct {
                return Err(ServerError::Prefix(p.to_string()));
            }
        }
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let (lock, previous) = lock_dir(&config.dir)?;
        let tmp_dir: PathBuf = config.dir.join("server-tmp");
        // Spool files left by a previous run are garbage.
        let _ = std::fs::remove_dir_all(&tmp_dir);
        if let Some(pid) = previous {
            remove_writes_of_a_dead_server(&config.dir, pid);
        }
        std::fs::create_dir_all(&tmp_dir).map_err(|e| ServerError::Store {
            dir: config.dir.display().to_string(),
            source: larder_core::Error::io(format!("creating {}", tmp_dir.display()), e),
        })?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen.to_string(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        // Below every protocol: a key namespace one protocol owns keeps its invariant whichever
        // protocol writes it (a native PUT under bazel-cas/ must hash to its key), and an entry
        // breaking it on disk or upstream is a miss.
        let store: Arc<dyn Store> = Arc::new(larder_core::layer::Namespaces::new(store));
        // Outermost, so that a refused entry is neither stored nor sent upstream.
        let store: Arc<dyn Store> = match &config.admission {
            Some(policy) => {
                let counted = Arc::clone(&metrics);
                Arc::new(
                    Admission::new(store, Arc::clone(policy))
                        .on_refused(Arc::new(move |_key, c| counted.refused(c.size))),
                )
            }
            None => store,
        };
        // Outside admission: an untrusted push is refused (403) and counted as such, not as an
        // admission refusal.
        let store: Arc<dyn Store> = if config.trust_require.is_empty() {
            store
        } else {
            let counted = Arc::clone(&metrics);
            Arc::new(
                Trusted::new(store, config.trust_require.clone())
                    .check_reads(false)
                    .refuse_untrusted_writes(
                        UNSIGNED_NAMESPACES.iter().map(|p| p.to_string()).collect(),
                    )
                    .on_refused(Arc::new(move |_key| counted.untrusted())),
            )
        };
        let cleaner = Arc::new(Cleaner::new(
            Arc::clone(&store),
            &config.dir,
            &config.budget,
            Arc::clone(&metrics),
        ));
        let reservations =
            crate::body::Reservations::new(config.limits.max_reserved_bytes, Arc::clone(&metrics));
        let entry_slots = Arc::new(tokio::sync::Semaphore::new(
            config.limits.entry_codec_slots.max(1),
        ));
        let state = AppState::new(Shared {
            store,
            reservations,
            entry_slots,
            config: Arc::new(config),
            tmp_dir: Arc::new(tmp_dir),
            metrics,
            cleaner,
            replica: None,
            local: None,
            scrub: None,
        });
        Ok(Server {
            _lock: lock,
            tls,
            listener,
            addr,
            state,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store being served.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.state.store)
    }

    /// Serve until `shutdown` completes, then finish the requests in flight (for at most
    /// [`Limits::shutdown_timeout`](crate::Limits::shutdown_timeout)) and flush the store.
    ///
    /// # Errors
    /// [`ServerError::Serve`] when the listener fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let store = Arc::clone(&self.state.store);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!("larder-server: listening on {scheme}://{}", self.addr);
        let cleanup =
            tokio::spawn(Arc::clone(&self.state.cleaner).run(self.state.config.cleanup_interval));
        let upstream_trim = self.state.replica.as_ref().map(|r| {
            tokio::spawn(crate::upstream::trim_loop(
                Arc::clone(r),
                self.state.config.upstream_trim_interval,
            ))
        });
        let scrub = match (&self.state.local, &self.state.scrub) {
            (Some(fs), Some(progress)) => Some((
                Arc::clone(progress),
                tokio::spawn(scrub_loop(
                    Arc::clone(fs),
                    self.state.config.scrub.clone(),
                    Arc::clone(progress),
                )),
            )),
            _ => None,
        };
        let limits = self.state.config.limits.clone();
        let metrics = Arc::clone(&self.state.metrics);
        // The caller's runtime keeps the background work and the upstream store's calls;
        // connections are accepted and served on the connection runtimes `serve` starts (see
        // crate::runtimes).
        let accepting = tokio::spawn(crate::accept::serve(
            self.listener,
            self.tls,
            router(self.state),
            limits,
            metrics,
            shutdown,
        ));
        match accepting.await {
            Ok(served) => served?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(ServerError::Serve(std::io::Error::other(e))),
        }
        cleanup.abort();
        if let Some(task) = upstream_trim {
            task.abort();
        }
        if let Some((progress, task)) = scrub {
            // The pass in progress returns within a piece; the wait between passes ends at once.
            progress.stop();
            task.abort();
            let _ = task.await;
        }
        if let Err(e) = store.flush().await {
            tracing::warn!("larder-server: flushing the store: {e}");
        }
        Ok(())
    }
}

/// The background scrub: a pass at `scrub.rate`, then the next one `scrub.interval` after this
/// one started (at once if it took longer), until `progress` is stopped.
async fn scrub_loop(fs: Arc<FsStore>, scrub: crate::config::Scrub, progress: Arc<ScrubProgress>) {
    loop {
        let started = tokio::time::Instant::now();
        match fs.scrub(scrub.rate, Arc::clone(&progress)).await {
            Ok(report) if report.stopped => return,
            Ok(report) => {
                let level_warn = !report.corrupt.is_empty() || report.unreadable > 0;
                let line = format!(
                    "larder-server: scrub pass done in {:.1} s: {} blobs good, {} damaged and removed, {} unreadable, {} MB read",
                    report.elapsed.as_secs_f64(),
                    report.good,
                    report.corrupt.len(),
                    report.unreadable,
                    report.bytes / 1_000_000
                );
                if level_warn {
                    tracing::warn!("{line}");
                } else {
                    tracing::info!("{line}");
                }
            }
            Err(e) => tracing::warn!("larder-server: scrub pass failed: {e}"),
        }
        if progress.is_stopped() {
            return;
        }
        tokio::time::sleep_until(started + scrub.interval).await;
    }
}

/// Remove the store's temporary files that the server `pid`, which served `dir` before and
/// died (the lock was free), left there: the uploads it was writing when it was killed. They
/// are nothing anyone can read, and without this only a trim removes them, an hour later.
/// Skipped when another process now has that pid (it may write to the same directory); a
/// server that restarts under its old pid (pid 1 in a container) has written nothing yet.
fn remove_writes_of_a_dead_server(dir: &Path, pid: u32) {
    if pid != std::process::id() && process_exists(pid) {
        return;
    }
    match larder_fs::remove_temp_files_of(dir, pid) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} unfinished writes left by server process {pid}"),
        Err(e) => tracing::warn!(
            "cannot remove the unfinished writes server process {pid} left in {}: {e}",
            dir.display()
        ),
    }
}

/// Whether a process with this pid exists (as far as this process can see).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the pid exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Take the exclusive lock that makes one server per directory, and write our pid into it:
/// the lock, and the pid the file named before (the last server of the directory, now gone).
fn lock_dir(dir: &Path) -> Result<(std::fs::File, Option<u32>), ServerError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("server.lock");
    let io_err = |what: &str, e: std::io::Error| ServerError::Store {
        dir: dir.display().to_string(),
        source: larder_core::Error::io(format!("{what} {}", path.display()), e),
    };
    std::fs::create_dir_all(dir).map_err(|e| io_err("creating the directory of", e))?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err("opening", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(ServerError::Locked {
                dir: dir.display().to_string(),
                pid: pid.trim().to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err("locking", e)),
    }
    let mut before = String::new();
    let previous = file
        .read_to_string(&mut before)
        .ok()
        .and_then(|_| before.trim().parse::<u32>().ok());
    file.set_len(0).map_err(|e| io_err("truncating", e))?;
    file.rewind().map_err(|e| io_err("rewinding", e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| io_err("writing", e))?;
    Ok((file, previous))
}

/// Bind `config` and serve until `shutdown` completes (see [`Server`]).
///
/// # Errors
/// As [`Server::bind`] and [`Server::run`].
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}

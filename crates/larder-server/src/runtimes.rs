//! The connection runtimes, and the store adapter that keeps upstream calls off them.
//!
//! Connections are served on [`ConnRuntimes`]: `connection_threads` threads, each running a
//! single-threaded tokio runtime of its own. A connection stays on the runtime it was handed to
//! for its whole life, and everything it starts (its requests, the store calls they make,
//! HTTP/2 stream tasks, timers) runs there too: a small keep-alive request is read, answered
//! and written by one thread, with no hand-over between threads and no work-stealing
//! bookkeeping, the way nginx's worker processes serve their connections. Blocking work
//! (`spawn_blocking`) goes to that runtime's blocking pool. Nothing here uses `block_in_place`,
//! which a single-threaded runtime does not allow.
//!
//! Each runtime runs its own accept loop on the one listening socket (see [`crate::accept`]):
//! a new connection is accepted by a runtime that is free to take it, and served there, with no
//! hand-over from an acceptor thread. The connection semaphore, the drain signal and the
//! metrics are shared by all the runtimes, so every bound holds for the server as a whole.
//!
//! Network clients keep their pooled connections on the runtime that opened them: a connection
//! opened while serving one request is driven by that runtime, and reused by any other. The
//! upstream store is therefore wrapped in [`OnRuntime`], which makes every call to it on the
//! server's main runtime (the one [`Server::bind`](crate::Server::bind) ran on), so that its
//! pooled connections all live there, which outlives the connection runtimes.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, Error, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport, VerifiedFile,
};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The runtimes that serve connections (see the module docs).
pub(crate) struct ConnRuntimes {
    cores: Vec<Core>,
}

/// One connection runtime.
struct Core {
    handle: Handle,
    /// Dropped to stop the runtime.
    stop: oneshot::Sender<()>,
    /// Sent once the runtime has shut down.
    stopped: oneshot::Receiver<()>,
}

impl ConnRuntimes {
    /// Start `threads` (at least 1) runtimes. Once stopped (or dropped), each waits up to
    /// `grace` for its blocking tasks before its thread ends.
    pub(crate) fn start(threads: usize, grace: Duration) -> std::io::Result<ConnRuntimes> {
        let mut cores = Vec::new();
        for i in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("larder-conn-{i}-blocking"))
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stop_rx) = oneshot::channel::<()>();
            let (stopped_tx, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("larder-conn-{i}"))
                .spawn(move || {
                    // A current-thread runtime runs its tasks while it is blocked on: here, until
                    // the stop sender is sent on or dropped.
                    let _ = runtime.block_on(stop_rx);
                    runtime.shutdown_timeout(grace);
                    let _ = stopped_tx.send(());
                })?;
            cores.push(Core {
                handle,
                stop,
                stopped,
            });
        }
        Ok(ConnRuntimes { cores })
    }

    /// The runtimes' handles, one per runtime.
    pub(crate) fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.cores.iter().map(|core| &core.handle)
    }

    /// Stop every runtime and wait until their threads are done (tasks still running on them
    /// are dropped; blocking tasks get the grace given to [`ConnRuntimes::start`]).
    pub(crate) async fn stop(self) {
        let mut waiting = Vec::with_capacity(self.cores.len());
        for core in self.cores {
            drop(core.stop);
            waiting.push(core.stopped);
        }
        for stopped in waiting {
            let _ = stopped.await;
        }
    }
}

/// A store whose every call runs on one given runtime (see the module docs): the caller awaits
/// a task there, and blob and list streams are forwarded from a task there.
pub(crate) struct OnRuntime {
    inner: Arc<dyn Store>,
    handle: Handle,
}

impl OnRuntime {
    /// Make `inner`'s calls on the runtime of `handle`.
    pub(crate) fn new(inner: Arc<dyn Store>, handle: Handle) -> OnRuntime {
        OnRuntime { inner, handle }
    }

    /// Run `call` with the inner store on the runtime; dropping the returned future cancels it.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let task = AbortOnDrop(self.handle.spawn(call(Arc::clone(&self.inner))));
        task.await
    }

    /// Forward `stream` from a task on the runtime, a few items ahead of the reader.
    fn forward<T: Send + 'static>(
        &self,
        mut stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let (tx, rx) = mpsc::channel(2);
        let task = self.handle.spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(Forwarded {
            rx,
            _task: AbortOnDrop(task),
        })
    }
}

impl fmt::Display for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A task on another runtime, aborted when its awaiting side goes away.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<Result<T>> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match Pin::new(&mut self.get_mut().0).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(out)) => Poll::Ready(out),
            Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::io(
                "calling the upstream store",
                std::io::Error::other(e),
            ))),
        }
    }
}

/// The reading side of [`OnRuntime::forward`].
struct Forwarded<T> {
    rx: mpsc::Receiver<Result<T>>,
    _task: AbortOnDrop<()>,
}

impl<T> Stream for Forwarded<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

#[async_trait]
impl Store for OnRuntime {
    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        let key = key.clone();
        self.run(|s| async move { s.get_entry_opts(&key, opts).await })
            .await
    }

    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        let (key, entry) = (key.clone(), entry.clone());
        self.run(|s| async move { s.put_entry_opts(&key, &entry, opts).await })
            .await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let digest = *digest;
        let read = self
            .run(|s| async move { s.get_blob(&digest).await })
            .await?;
        Ok(read.map(|r| BlobRead {
            size: r.size,
            stream: self.forward(r.stream),
        }))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        let digest = *digest;
        self.run(|s| async move { s.put_blob(&digest, size, payload).await })
            .await
    }

    async fn put_blob_file(&self, digest: &Digest, file: VerifiedFile) -> Result<PutOutcome> {
        let digest = *digest;
        self.run(|s| async move { s.put_blob_file(&digest, file).await })
            .await
    }

    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let (digest, dest) = (*digest, dest.to_owned());
        self.run(|s| async move { s.place_blob(&digest, &dest, how).await })
            .await
    }

    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        self.run(|s| async move { s.find_missing(&digests).await })
            .await
    }

    async fn find_missing_entries(&self, keys: &[Key]) -> Result<Vec<Key>> {
        let keys = keys.to_vec();
        self.run(|s| async move { s.find_missing_entries(&keys).await })
            .await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let key = key.clone();
        self.run(|s| async move { s.delete(&key).await }).await
    }

    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        // Listing starts the inner store's stream inside the task, so that nothing of it is made
        // on the caller's runtime.
        let inner = Arc::clone(&self.inner);
        let listing = futures::stream::once(async move { inner.list() }).flatten();
        self.forward(Box::pin(listing))
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.run(|s| async move { s.stats().await }).await
    }

    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        let opts = opts.clone();
        self.run(|s| async move { s.trim(&opts, progress).await })
            .await
    }

    async fn flush(&self) -> Result<()> {
        self.run(|s| async move { s.flush().await }).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use larder_fs::{FsConfig, FsStore};

    use super::*;

    /// A store that notes the name of the thread each of its calls, and each poll of the blob
    /// streams it returns, runs on.
    #[derive(Debug)]
    struct Probe {
        inner: Arc<dyn Store>,
        threads: Arc<Mutex<Vec<String>>>,
    }

    impl Probe {
        fn note(&self) {
            note(&self.threads);
        }
    }

    fn note(threads: &Mutex<Vec<String>>) {
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        threads.lock().expect("lock").push(name);
    }

    impl fmt::Display for Probe {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "probe over {}", self.inner)
        }
    }

    #[async_trait]
    impl Store for Probe {
        fn capability(&self) -> Capability {
            self.inner.capability()
        }
        async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
            self.note();
            self.inner.get_entry_opts(key, opts).await
        }
        async fn put_entry_opts(
            &self,
            key: &Key,
            entry: &Entry,
            opts: PutOptions,
        ) -> Result<PutOutcome> {
            self.note();
            self.inner.put_entry_opts(key, entry, opts).await
        }
        async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
            self.note();
            let threads = Arc::clone(&self.threads);
            Ok(self.inner.get_blob(digest).await?.map(|r| BlobRead {
                size: r.size,
                stream: Box::pin(r.stream.inspect(move |_| note(&threads))),
            }))
        }
        async fn put_blob(
            &self,
            digest: &Digest,
            size: u64,
            payload: ByteStream,
        ) -> Result<PutOutcome> {
            self.note();
            self.inner.put_blob(digest, size, payload).await
        }
        async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
            self.note();
            self.inner.find_missing(digests).await
        }
        async fn delete(&self, key: &Key) -> Result<bool> {
            self.note();
            self.inner.delete(key).await
        }
        fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
            self.note();
            self.inner.list()
        }
        async fn flush(&self) -> Result<()> {
            self.note();
            self.inner.flush().await
        }
    }

    #[test]
    fn every_call_and_every_blob_read_runs_on_the_given_runtime() {
        let upstream = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("upstream-runtime")
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let fs = FsStore::open(dir.path(), FsConfig::default()).expect("store");
        let threads = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            inner: Arc::new(fs),
            threads: Arc::clone(&threads),
        };
        let store = OnRuntime::new(Arc::new(probe), upstream.handle().clone());
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        caller.block_on(async {
            // Several chunks, more than the forwarding channel holds.
            let chunks: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 4096])).collect();
            let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            let digest = Digest::of(&all);
            let payload: ByteStream = Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)));
            store
                .put_blob(&digest, all.len() as u64, payload)
                .await
                .expect("put");
            let read = store.get_blob(&digest).await.expect("get").expect("found");
            assert_eq!(read.size, all.len() as u64);
            let got: Vec<Bytes> = read.stream.map(|c| c.expect("chunk")).collect().await;
            assert_eq!(got.concat(), all);
            assert!(
                store
                    .find_missing(&[digest])
                    .await
                    .expect("find")
                    .is_empty()
            );
            let key = Key::new("a/missing").expect("key");
            assert!(
                store
                    .get_entry_opts(&key, GetOptions::default())
                    .await
                    .expect("get entry")
                    .is_none()
            );
            assert!(!store.delete(&key).await.expect("delete"));
            let listed: Vec<_> = store.list().collect().await;
            assert!(listed.iter().all(|e| e.is_ok()), "{listed:?}");
            store.flush().await.expect("flush");
        });
        let threads = threads.lock().expect("lock");
        // put, get, its chunks, find, get entry, delete, list, flush.
        assert!(threads.len() >= 8, "{threads:?}");
        assert!(
            threads.iter().all(|t| t == "upstream-runtime"),
            "{threads:?}"
        );
    }
}

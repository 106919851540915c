//! What larder writes to stderr besides a command's own output: warnings, status lines and
//! progress bars.
//!
//! Progress bars appear only when stderr is a terminal (and not with `--quiet`): a build log
//! never fills with bar redraws. Transfers get a bar only past [`LARGE_TRANSFER`] bytes.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use larder_core::store::ProgressFn;
use larder_core::{
    BlobRead, ByteStream, Capability, Digest, Entry, EntryMeta, GetOptions, Key, Placement,
    PutOptions, PutOutcome, Result, Store, StoreStats, TrimOptions, TrimReport,
};

/// Transfers at least this large show a progress bar (on a terminal).
pub(crate) const LARGE_TRANSFER: u64 = 64 << 20;

/// How chatty larder is on stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    verbose: u8,
    quiet: bool,
    terminal: bool,
}

impl Ui {
    /// From `-v` (repeatable) and `-q`.
    pub(crate) fn new(verbose: u8, quiet: bool) -> Self {
        Ui {
            verbose,
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Whether `-v` was given.
    pub(crate) fn verbose(&self) -> bool {
        self.verbose > 0 && !self.quiet
    }

    /// Whether `-q` was given.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// `larder: warning: ...` (not with `-q`).
    pub(crate) fn warn(&self, msg: impl fmt::Display) {
        if !self.quiet {
            eprintln!("larder: warning: {msg}");
        }
    }

    /// A status line, shown with `-v`.
    pub(crate) fn status(&self, msg: impl fmt::Display) {
        if self.verbose() {
            eprintln!("larder: {msg}");
        }
    }

    /// A message shown unless `-q`.
    pub(crate) fn note(&self, msg: impl fmt::Display) {
        if !self.quiet {
            eprintln!("larder: {msg}");
        }
    }

    /// A progress bar over `total` units, drawn on stderr only when it is a terminal.
    pub(crate) fn bar(&self, total: u64, message: &'static str, bytes: bool) -> ProgressBar {
        if self.quiet || !self.terminal {
            return ProgressBar::hidden();
        }
        let template = if bytes {
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
        } else {
            "{msg} [{bar:30}] {pos}/{len}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(message);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A [`ProgressFn`] feeding `bar`.
    pub(crate) fn progress_fn(bar: &ProgressBar) -> ProgressFn {
        let bar = bar.clone();
        Arc::new(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
    }

    /// `store`, wrapped so that blob transfers advance a byte bar when `total` is large and
    /// stderr is a terminal; `store` itself otherwise.
    pub(crate) fn transfer(
        &self,
        store: Arc<dyn Store>,
        total: u64,
        message: &'static str,
    ) -> (Arc<dyn Store>, Option<ProgressBar>) {
        if total < LARGE_TRANSFER || self.quiet || !self.terminal {
            return (store, None);
        }
        let bar = self.bar(total, message, true);
        let wrapped = Arc::new(Counting {
            inner: store,
            bar: bar.clone(),
        });
        (wrapped, Some(bar))
    }
}

/// A store that advances a progress bar as blobs go in and out.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Store>,
    bar: ProgressBar,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for Counting {
    fn capability(&self) -> Capability {
        self.inner.capability()
    }
    async fn get_entry_opts(&self, key: &Key, opts: GetOptions) -> Result<Option<Entry>> {
        self.inner.get_entry_opts(key, opts).await
    }
    async fn put_entry_opts(
        &self,
        key: &Key,
        entry: &Entry,
        opts: PutOptions,
    ) -> Result<PutOutcome> {
        self.inner.put_entry_opts(key, entry, opts).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRead>> {
        let Some(read) = self.inner.get_blob(digest).await? else {
            return Ok(None);
        };
        let bar = self.bar.clone();
        let stream = read
            .stream
            .inspect(move |c| {
                if let Ok(c) = c {
                    bar.inc(c.len() as u64);
                }
            })
            .boxed();
        Ok(Some(BlobRead {
            size: read.size,
            stream,
        }))
    }
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        payload: ByteStream,
    ) -> Result<PutOutcome> {
        let bar = self.bar.clone();
        let counted = payload
            .inspect(move |c| {
                if let Ok(c) = c {
                    bar.inc(c.len() as u64);
                }
            })
            .boxed();
        self.inner.put_blob(digest, size, counted).await
    }
    async fn place_blob(&self, digest: &Digest, dest: &Path, how: Placement) -> Result<bool> {
        let placed = self.inner.place_blob(digest, dest, how).await?;
        if placed && let Ok(m) = std::fs::metadata(dest) {
            self.bar.inc(m.len());
        }
        Ok(placed)
    }
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        self.inner.find_missing(digests).await
    }
    async fn delete(&self, key: &Key) -> Result<bool> {
        self.inner.delete(key).await
    }
    fn list(&self) -> BoxStream<'static, Result<EntryMeta>> {
        self.inner.list()
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
    async fn trim(&self, opts: &TrimOptions, progress: Option<ProgressFn>) -> Result<TrimReport> {
        self.inner.trim(opts, progress).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

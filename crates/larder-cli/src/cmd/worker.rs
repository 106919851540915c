//! `larder worker`: a long-lived process that build systems talk to over a pipe, one request per
//! line on stdin and one answer per line on stdout, so a task costs a line, not a process start.
//!
//! The store is opened once. Requests are served one at a time, in order. Nothing a client sends
//! can stop the worker: bad input, unsafe paths, missing files and store failures are answers.
//! End of input flushes the store's metadata, prints statistics when asked, and exits 0.
//! With `--upload-workers N`, puts are answered once their files are read and uploaded in the
//! background; end of input waits for those uploads, or abandons them with `--no-wait`.
//!
//! Two protocols share the operations in [`Worker`]: `json` (see `docs/worker-protocol.md`) and
//! `wafcache`, the line protocol of waf's `wafcache.py` workers ([`wafcache`]). Looking up,
//! restoring, storing and the upload queue are [`larder_client::Cache`]'s; the worker counts
//! them and words the answers.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use larder_client::{
    Cache, Declared, Done, Lookup, Prepared, Queued, Restore, Stored, Streams, Uploads,
};
use larder_core::size::format_size;
use larder_core::{Entry, Key};

use super::{Ctx, EXIT_OK, flush};
use crate::progress::Ui;

mod json;
mod pickle;
mod wafcache;

const EXAMPLES: &str = "\
Examples:
  larder worker                        # JSON lines: {\"op\":\"get\",\"key\":\"k\",\"files\":[\"out\"]}
  WAFCACHE=/srv/cache larder worker --protocol wafcache

The protocols are described in docs/worker-protocol.md. Exit status: 0 at end of input,
2 if the store cannot be opened or stdout is gone.";

/// Lines longer than this are refused (answered with an error) rather than buffered.
const MAX_LINE: usize = 16 << 20;

/// The line protocol spoken on stdin/stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// One JSON object per line (docs/worker-protocol.md)
    Json,
    /// waf's wafcache workers: base64 of a pickled [sig, files_from, files_to]
    Wafcache,
}

/// Serve cache requests read line by line from stdin, for build-system plugins.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The request format
    #[arg(long, value_enum, default_value = "json")]
    protocol: Protocol,
    /// At exit, print requests, hits, hit ratio, writes and bytes to stderr (also when
    /// WAFCACHE_STATS is set)
    #[arg(long)]
    stats: bool,
    /// Answer puts as soon as the files are read and upload them in the background, N at a
    /// time; a failed upload is a warning, never an error answer (0: upload before answering)
    #[arg(long, value_name = "N", default_value_t = 0)]
    upload_workers: usize,
    /// At end of input, abandon the uploads still running (and say how many) instead of
    /// waiting for them
    #[arg(long, requires = "upload_workers")]
    no_wait: bool,
}

/// What [`Worker::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// Stored before answering.
    Now,
    /// Queued for a background upload.
    Queued,
    /// Not stored: the admission policy refused it.
    Refused,
}

/// What the worker did, for `--stats` and the JSON `stats` request.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Stats {
    /// Lines answered.
    pub(crate) requests: u64,
    /// Lookups: gets and exists checks.
    pub(crate) lookups: u64,
    /// Lookups that found their entry (and, for gets, restored it).
    pub(crate) hits: u64,
    /// Put requests.
    pub(crate) puts: u64,
    /// Entries stored.
    pub(crate) writes: u64,
    /// Bytes of the outputs stored.
    pub(crate) bytes_written: u64,
    /// Bytes of the outputs restored.
    pub(crate) bytes_restored: u64,
    /// Gets that found a poisoned entry (one naming outputs it was not asked for, or a
    /// symlink leaving the root): misses, and the entry removed.
    pub(crate) poisoned: u64,
    /// Requests answered with an error (misses are not errors in the JSON protocol).
    pub(crate) errors: u64,
    /// Background uploads that failed (their puts were answered ok).
    pub(crate) uploads_failed: u64,
    /// Background uploads abandoned at exit (`--no-wait`).
    pub(crate) uploads_abandoned: u64,
}

impl Stats {
    /// Hits per lookup, in percent (0 without lookups).
    fn hit_percent(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / self.lookups as f64
        }
    }
}

/// A successful get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restored {
    /// Outputs placed.
    pub(crate) files: usize,
    /// Their bytes.
    pub(crate) bytes: u64,
}

/// The task cache a worker serves requests with.
#[derive(Debug)]
pub(crate) struct Worker<'a> {
    /// The open store, its settings and the admission policy.
    cache: Cache<'static>,
    cwd: PathBuf,
    /// Where `no_push` was set, when storing is disabled.
    no_push: Option<String>,
    ui: &'a Ui,
    stats: Stats,
    uploads: Option<Uploads>,
}

impl Worker<'_> {
    /// `path` made absolute against the worker's working directory.
    fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.cwd.join(path)
        }
    }

    /// Fail when storing is disabled by `no_push`.
    fn check_push(&self) -> Result<()> {
        match &self.no_push {
            Some(source) => Err(anyhow!("storing is disabled by no_push (from {source})")),
            None => Ok(()),
        }
    }

    /// Store `prepared` under `key`, now or (with upload workers) in the background.
    async fn store(&mut self, key: Key, prepared: Prepared) -> Result<Put> {
        let refused = |policy: String| {
            self.ui.status(format_args!(
                "not stored {key}: refused by the admission policy {policy}"
            ));
            Ok(Put::Refused)
        };
        let Some(uploads) = &mut self.uploads else {
            let stored = self
                .cache
                .put(&key, prepared, Streams::default())
                .await
                .map_err(larder_client::Error::into_inner)
                .with_context(|| format!("cannot store {key} in {}", self.cache.store()))?;
            return match stored {
                Stored::Now { bytes, .. } => {
                    self.stats.writes += 1;
                    self.stats.bytes_written += bytes;
                    Ok(Put::Now)
                }
                Stored::Refused(policy) => refused(policy),
            };
        };
        match self
            .cache
            .queue(uploads, key.clone(), prepared, Streams::default(), 1)
            .await
        {
            Queued::Uploading { finished, .. } => {
                for done in finished {
                    self.account(done);
                }
                Ok(Put::Queued)
            }
            Queued::Refused(policy) => refused(policy),
        }
    }

    /// Count a finished background upload.
    fn account(&mut self, done: Done) {
        match done {
            Done::Stored(bytes) => {
                self.stats.writes += 1;
                self.stats.bytes_written += bytes;
            }
            Done::Failed(msg) => {
                self.stats.uploads_failed += 1;
                self.ui
                    .warn(format_args!("background upload failed: {msg}"));
            }
            Done::Abandoned => self.stats.uploads_abandoned += 1,
        }
    }

    /// At end of input: wait for the background uploads, or abandon them with `no_wait`.
    async fn finish_uploads(&mut self, no_wait: bool) {
        let Some(uploads) = self.uploads.take() else {
            return;
        };
        let pending = uploads.len();
        if !no_wait && pending > 0 {
            self.ui
                .status(format_args!("waiting for {pending} background uploads"));
        }
        for done in uploads.finish(no_wait).await {
            self.account(done);
        }
        if self.stats.uploads_abandoned > 0 {
            self.ui.warn(format_args!(
                "abandoned {} background uploads (--no-wait)",
                self.stats.uploads_abandoned
            ));
        }
    }

    /// Look `key` up. A failing store is a miss, with a warning on stderr.
    async fn lookup(&mut self, key: &Key, wanted: &[String]) -> Result<Entry, String> {
        self.stats.lookups += 1;
        match self.cache.lookup(key, wanted).await {
            Ok(Lookup::Found(entry)) => Ok(*entry),
            Ok(Lookup::Miss) => Err(format!("no entry {key}")),
            Ok(Lookup::Absent(name)) => Err(format!("entry {key} has no output {name}")),
            Err(e) => {
                let msg = format!(
                    "cannot look up {key} in {}: {}",
                    self.cache.store(),
                    e.into_inner()
                );
                self.ui.warn(&msg);
                Err(msg)
            }
        }
    }

    /// Place `entry`'s outputs (looked up under `key`) under `root`, only the `wanted` ones
    /// and what is below them (all of them when empty: the client asked for the whole entry);
    /// `Err` is a miss (why), with a warning on stderr when something failed rather than
    /// simply being absent. A poisoned entry is removed from the store.
    async fn restore(
        &mut self,
        key: &Key,
        entry: &Entry,
        root: &Path,
        wanted: &[String],
    ) -> Result<Restored, String> {
        let declared = if wanted.is_empty() {
            Declared::Entry
        } else {
            Declared::Only(wanted)
        };
        match self.cache.restore(key, entry, root, declared).await {
            Ok(Restore::Restored) => {
                let bytes = entry.total_size();
                self.stats.hits += 1;
                self.stats.bytes_restored += bytes;
                Ok(Restored {
                    files: entry.outputs.len(),
                    bytes,
                })
            }
            Ok(Restore::Missing) => Err(format!(
                "the stored data of {} is missing or corrupt",
                entry.key
            )),
            Ok(Restore::Poisoned { path, reason }) => {
                self.stats.poisoned += 1;
                Err(format!(
                    "entry {key} is poisoned: its output {path:?} {reason}"
                ))
            }
            Err(e) => {
                let msg = format!("cannot restore {}: {}", entry.key, e.into_inner());
                self.ui.warn(&msg);
                Err(msg)
            }
        }
    }
}

/// One line read from stdin.
enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Whole lines from stdin, read with blocking calls.
///
/// The worker loop runs in `main`'s `block_on`, on the main thread, which is not one of the
/// runtime's workers, so blocking there stalls nothing (`block_in_place` keeps that true if the
/// loop ever moves to a worker). A reader thread handing lines over a channel, or tokio's stdin,
/// would cost a thread wake-up per request, which was most of a small request's CPU time.
struct LineReader {
    input: std::io::StdinLock<'static>,
    quiet: bool,
}

impl LineReader {
    fn new(ui: &Ui) -> LineReader {
        LineReader {
            input: std::io::stdin().lock(),
            quiet: ui.quiet(),
        }
    }

    /// The next line without its trailing whitespace; `None` at end of input or on a read error.
    fn next(&mut self) -> Option<Line> {
        let mut buf = Vec::new();
        let read = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                if !self.quiet {
                    eprintln!("larder: warning: cannot read stdin: {e}");
                }
                return None;
            }
        }
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            self.skip_line()?;
            return Some(Line::TooLong);
        }
        while buf.last().is_some_and(|b| b.is_ascii_whitespace()) {
            buf.pop();
        }
        Some(Line::Text(buf))
    }

    /// Discard input up to and including the next newline, without buffering it.
    fn skip_line(&mut self) -> Option<()> {
        loop {
            let chunk = self.input.fill_buf().ok()?;
            if chunk.is_empty() {
                return Some(());
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.input.consume(i + 1);
                    return Some(());
                }
                None => {
                    let n = chunk.len();
                    self.input.consume(n);
                }
            }
        }
    }
}

/// How long a worker skips a remote tier that failed before trying it again: a worker serves
/// a whole build, which should not lose the remote for good to one outage.
const REMOTE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Run `larder worker`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let config = ctx.config(Vec::new())?;
    let opened = ctx.open_long_lived(&config, REMOTE_RETRY_AFTER)?;
    let cache = ctx
        .cache(opened.store, &config)
        .with_admission(crate::policies::admission_policy(&config, &ctx.ui));
    let mut worker = Worker {
        cache,
        cwd: ctx.cwd.clone(),
        no_push: config
            .no_push
            .value
            .then(|| config.no_push.source.to_string()),
        ui: &ctx.ui,
        stats: Stats::default(),
        uploads: (args.upload_workers > 0).then(|| Uploads::new(args.upload_workers)),
    };
    let mut lines = LineReader::new(&ctx.ui);
    let stdout = std::io::stdout();
    let served = async {
        while let Some(line) = tokio::task::block_in_place(|| lines.next()) {
            worker.stats.requests += 1;
            let mut answer = match (args.protocol, line) {
                (Protocol::Json, Line::Text(l)) => json::handle(&mut worker, &l).await,
                (Protocol::Wafcache, Line::Text(l)) => wafcache::handle(&mut worker, &l).await,
                (Protocol::Json, Line::TooLong) => {
                    worker.stats.errors += 1;
                    json::error_line(&format!("request longer than {MAX_LINE} bytes"))
                }
                (Protocol::Wafcache, Line::TooLong) => {
                    worker.stats.errors += 1;
                    wafcache::answer(&format!("request longer than {MAX_LINE} bytes"))
                }
            };
            answer.push(b'\n');
            let mut out = stdout.lock();
            out.write_all(&answer)
                .and_then(|()| out.flush())
                .context("cannot write an answer to stdout")?;
        }
        anyhow::Ok(())
    }
    .await;
    worker.finish_uploads(args.no_wait).await;
    flush(worker.cache.store().as_ref(), &ctx.ui).await;
    let wafcache_stats = std::env::var_os("WAFCACHE_STATS").is_some_and(|v| !v.is_empty());
    if args.stats || wafcache_stats {
        let s = worker.stats;
        eprintln!(
            "larder: worker stats: {} requests, {} hits (ratio: {:.2}% of {} lookups), {} writes, {} written, {} restored, {} errors{}{}{}",
            s.requests,
            s.hits,
            s.hit_percent(),
            s.lookups,
            s.writes,
            format_size(s.bytes_written),
            format_size(s.bytes_restored),
            s.errors,
            if s.poisoned > 0 {
                format!(", {} poisoned entries refused", s.poisoned)
            } else {
                String::new()
            },
            match crate::stores::untrusted_reads() {
                0 => String::new(),
                n => format!(", {n} entries no trusted key signed ignored"),
            },
            if s.uploads_failed + s.uploads_abandoned > 0 {
                format!(
                    ", {} failed and {} abandoned uploads",
                    s.uploads_failed, s.uploads_abandoned
                )
            } else {
                String::new()
            }
        );
    }
    served?;
    Ok(EXIT_OK)
}

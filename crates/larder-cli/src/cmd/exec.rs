//! `larder exec`: run a command through the cache.
//!
//! The command's signature covers its arguments, the chosen environment variables, every input
//! file (name and contents) and the output names. On a hit the outputs are restored, the
//! captured stdout and stderr replayed and the recorded exit code returned, without running the
//! command. On a miss the command runs with its output passed through live (and captured), and
//! if it succeeds its outputs are stored.
//!
//! The cache never fails the build: any store error is a warning, and the command runs.
//!
//! Signing, the hit, storing, the background upload and the trim are
//! [`larder_client`]'s; this module expands the inputs, loads the policies, runs the command
//! (signals passed on, output passed through and captured) and prints the status lines.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use larder_client::{Cache, Done, Hit, Prepared, Queued, Stored, Streams, Uploads};
use larder_core::normalize::{BaseDirs, PathNormalizer};
use larder_core::size::format_size;
use larder_core::{Key, Store};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::{Ctx, flush, plural};
use crate::config::{self, Config};
use crate::paths::{expand_inputs, workdir_relative};
use crate::policies;
use crate::progress::Ui;

/// Captured stdout or stderr past this size is not kept, and the run is not cached.
const CAPTURE_LIMIT: usize = 64 << 20;

/// How long to wait for the command's output pipes to close after it exits, without any data
/// arriving, before deciding a background process inherited them.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The stat cache's file name in the cache directory.
const STATCACHE_FILE: &str = "statcache.bin";

const EXAMPLES: &str = "\
Examples:
  # Compile through the cache: the second run restores `app` without running cc.
  larder exec --in main.c --in 'include/**/*.h' --out app -- cc -O2 -o app main.c

  # A code generator whose output depends on $TARGET and a tool version.
  larder exec --in schema.json --out gen/ --env TARGET --salt \"$(protoc --version)\" -- ./gen.sh

On a hit, stdout, stderr and the exit code are replayed. Runs that exit non-zero are not stored.
With -v, larder prints one line per run: `larder: hit 1a2b3c4d: restored 3 outputs, saved 1.23 s`.";

/// Run a command through the cache: restore its outputs on a hit, run and store them on a miss.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// An input: a file, a directory (all files below it) or a glob (`*`, `**`, `?`, `[ab]`,
    /// `{a,b}`), relative to the working directory. Directories and globs leave out the
    /// outputs. Repeatable
    #[arg(long = "in", value_name = "GLOB")]
    inputs: Vec<String>,
    /// An output file or directory the command creates, inside the working directory. Repeatable
    #[arg(long = "out", value_name = "PATH")]
    outputs: Vec<String>,
    /// An environment variable whose value (or absence) is part of the signature. Repeatable
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// Any string that should change the signature (a toolchain version, a cache buster)
    #[arg(long, value_name = "S", default_value = "", hide_default_value = true)]
    salt: String,
    /// The task kind, recorded as the entry's producer and part of the signature
    #[arg(long, value_name = "K", default_value = "exec")]
    kind: String,
    /// Use hits, but never store [env: LARDER_NO_PUSH, WAFCACHE_NO_PUSH]
    #[arg(long)]
    no_push: bool,
    /// Report the run as soon as the command has finished and its outputs are read, then
    /// upload them with up to N concurrent transfers; larder still waits for the upload before
    /// exiting (0: upload first, one transfer at a time). A failed upload is a warning
    #[arg(long, value_name = "N", default_value_t = 0)]
    upload_workers: usize,
    /// With --upload-workers: exit without waiting for the upload, abandoning it (the run is
    /// then not stored), and say so
    #[arg(long, requires = "upload_workers")]
    no_wait: bool,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// Run `larder exec`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let mut flags = Vec::new();
    if args.no_push {
        flags.push(("no_push", "true".to_owned(), "--no-push"));
    }
    let config = ctx.config(flags)?;
    let ui = &ctx.ui;
    let cwd = &ctx.cwd;
    for name in &args.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            bail!("--env {name:?} is not a variable name");
        }
    }
    let mut outputs: Vec<String> = Vec::new();
    for o in &args.outputs {
        let name = workdir_relative(cwd, o, "--out")?;
        if !outputs.contains(&name) {
            outputs.push(name);
        }
    }

    // A store that cannot be opened is a warning: the command still runs.
    let (store, local_dir) = match ctx.open(&config) {
        Ok(o) => (Some(o.store), o.local_dir),
        Err(e) => {
            ui.warn(format_args!("cache unavailable: {e:#}"));
            (None, None)
        }
    };
    let Some(key) = sign(&args, cwd, &outputs, local_dir.as_deref(), &config, ui)? else {
        // The path normalizer failed: no lookup (it could be a false hit), nothing stored.
        return run_uncached(&args.command, ui).await;
    };
    let task = Task {
        key: &key,
        kind: &args.kind,
        cwd,
        outputs: &outputs,
    };
    let short = &key.as_str()[..8];

    let mut cache = store.map(|s| {
        ctx.cache(s, &config)
            .with_budget(config.trim_options(), local_dir)
            .with_progress(ui)
    });
    if let Some(c) = &cache {
        match c.hit(&key, cwd, &outputs).await {
            Ok(Some(hit)) => {
                replay(&hit);
                ui.status(format_args!(
                    "hit {short}: restored {}, saved {:.2} s",
                    plural(hit.outputs as u64, "output"),
                    hit.cost_ms as f64 / 1000.0
                ));
                finish(c.store().as_ref(), &config, ui).await;
                return Ok(hit.exit_code);
            }
            Ok(None) => {}
            Err(e) => {
                unavailable(ui, e);
                cache = None;
            }
        }
    }

    // A miss: run the command.
    let ran = match run_command(&args.command).await {
        Ok(r) => r,
        Err(e) => {
            let code = cannot_run(&args.command, &e);
            if let Some(c) = &cache {
                finish(c.store().as_ref(), &config, ui).await;
            }
            return Ok(code);
        }
    };
    let mut uploads = (args.upload_workers > 0).then(|| Uploads::new(1));
    let background = uploads.as_mut().map(|u| Background {
        uploads: u,
        transfers: args.upload_workers,
    });
    let outcome = store_if_cacheable(cache.as_mut(), &task, &ran, &config, ui, background).await;
    ui.status(format_args!(
        "miss {short}: ran in {:.2} s, {outcome}",
        ran.cost.as_secs_f64()
    ));
    if let (Some(uploads), Some(c)) = (uploads, &cache) {
        finish_uploads(uploads, args.no_wait, c, ui).await;
    }
    if let Some(c) = &cache {
        finish(c.store().as_ref(), &config, ui).await;
    }
    Ok(ran.code)
}

/// Report that the command cannot be started; its exit code (127 not found, else 126).
fn cannot_run(command: &[String], e: &std::io::Error) -> u8 {
    let program = command.first().map_or("", String::as_str);
    eprintln!("larder: error: cannot run `{program}`: {e}");
    match e.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    }
}

/// Run the command outside the cache (no lookup, nothing stored); its exit code.
async fn run_uncached(command: &[String], ui: &Ui) -> Result<u8> {
    match run_command(command).await {
        Ok(ran) => {
            ui.status(format_args!(
                "not cached: ran in {:.2} s",
                ran.cost.as_secs_f64()
            ));
            Ok(ran.code)
        }
        Err(e) => Ok(cannot_run(command, &e)),
    }
}

/// What a run is stored as.
struct Task<'a> {
    key: &'a Key,
    kind: &'a str,
    cwd: &'a Path,
    outputs: &'a [String],
}

/// The task's signature ([`larder_client::Task`]): command, chosen variables, inputs (names
/// relative to the working directory, and contents, through the stat cache), output names and
/// salt, with the working directory normalized away (or with the configured path normalizer).
/// `Ok(None)`, after a warning, when the normalizer cannot be loaded or fails: the run must
/// not be cached (fail closed, no false hits).
fn sign(
    args: &Args,
    cwd: &Path,
    outputs: &[String],
    local_dir: Option<&Path>,
    config: &Config,
    ui: &Ui,
) -> Result<Option<Key>> {
    let cwd_str = cwd
        .to_str()
        .context("the working directory's path is not valid UTF-8")?;
    let inputs = expand_inputs(cwd, &args.inputs, local_dir, outputs)?;
    let task = larder_client::Task {
        kind: &args.kind,
        command: &args.command,
        env: &args.env,
        inputs: &inputs,
        outputs,
        salt: &args.salt,
    };
    let digests = tokio::task::block_in_place(|| task.hash_inputs(statcache_path(local_dir)))?;
    let normalizer: Box<dyn PathNormalizer> = match policies::normalizer(config, cwd) {
        Ok(Some(n)) => n,
        Ok(None) => Box::new(BaseDirs::new([cwd_str])),
        Err(e) => {
            ui.warn(format_args!("{e:#}; not caching this run"));
            return Ok(None);
        }
    };
    match task.sign(&digests, normalizer.as_ref()) {
        Ok(key) => Ok(Some(key)),
        Err(e) => {
            ui.warn(format_args!(
                "cannot normalize the task's paths: {}; not caching this run",
                e.into_inner()
            ));
            Ok(None)
        }
    }
}

/// `--upload-workers`: where a run's upload is queued, and how many transfers it may use.
struct Background<'a> {
    uploads: &'a mut Uploads,
    transfers: usize,
}

/// Store a finished run if it can be cached, or (with `background`) queue its upload. Returns
/// the end of the status line: `stored 3 outputs (12.0 KiB)`, `uploading 3 outputs (12.0 KiB)
/// in the background` or `not stored (why)`.
async fn store_if_cacheable(
    cache: Option<&mut Cache<'_>>,
    task: &Task<'_>,
    ran: &Ran,
    config: &Config,
    ui: &Ui,
    background: Option<Background<'_>>,
) -> String {
    let not_stored = |why: &str| format!("not stored ({why})");
    let Some(cache) = cache else {
        return not_stored("cache unavailable");
    };
    if ran.code != 0 {
        return not_stored(&format!("exit code {}", ran.code));
    }
    if config.no_push.value {
        return not_stored(&format!("no_push from {}", config.no_push.source));
    }
    let (stdout, stderr) = match (&ran.stdout, &ran.stderr) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(why), _) | (_, Err(why)) => return not_stored(&format!("its output {why}")),
    };
    if let Some(o) = missing_output(task.cwd, task.outputs) {
        ui.warn(format_args!(
            "output {o} was not created by the command; not caching"
        ));
        return not_stored("missing output");
    }
    let prepared = match run_entry(cache, task, ran) {
        Ok(e) => e,
        Err(e) => {
            unavailable(ui, e);
            return not_stored("cache unavailable");
        }
    };
    // A hit would refuse this entry (a symlink out of the tree) and remove it: do not store it.
    if let Some(o) = cache.external_symlink(&prepared.entry) {
        ui.warn(format_args!(
            "output {} is a symlink leaving the working directory; not caching (allow_external_symlinks is off)",
            o.path
        ));
        return not_stored("a symlink output leaves the working directory");
    }
    // Loaded only now: a hit, or a run that is not stored, never pays for the policy.
    cache.set_admission(policies::admission_policy(config, ui));
    let streams = Streams {
        stdout: stdout.clone(),
        stderr: stderr.clone(),
    };
    let refused = |policy: &str| not_stored(&format!("refused by the admission policy {policy}"));
    if let Some(bg) = background {
        let key = task.key.clone();
        return match cache
            .queue(bg.uploads, key, prepared, streams, bg.transfers)
            .await
        {
            Queued::Uploading {
                outputs,
                bytes,
                finished,
            } => {
                // Nothing was queued before this run's upload: nothing to report yet.
                debug_assert!(finished.is_empty());
                format!(
                    "uploading {} ({}) in the background",
                    plural(outputs as u64, "output"),
                    format_size(bytes)
                )
            }
            Queued::Refused(policy) => refused(&policy),
        };
    }
    match cache.put(task.key, prepared, streams).await {
        Ok(Stored::Now { outputs, bytes }) => {
            trim(cache, ui).await;
            format!(
                "stored {} ({})",
                plural(outputs as u64, "output"),
                format_size(bytes)
            )
        }
        Ok(Stored::Refused(policy)) => refused(&policy),
        Err(e) => {
            unavailable(ui, e);
            not_stored("cache unavailable")
        }
    }
}

/// `statcache.bin` in the cache directory, or in the default cache directory for stores
/// without one.
fn statcache_path(local_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = local_dir {
        return Some(d.join(STATCACHE_FILE));
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    config::default_cache_dir(&env).map(|d| d.join(STATCACHE_FILE))
}

/// Flush the store, and print statistics if asked to.
async fn finish(store: &dyn Store, config: &Config, ui: &Ui) {
    flush(store, ui).await;
    if config.stats.value && !ui.quiet() {
        match store.stats().await {
            Ok(s) => eprintln!(
                "larder: stats: {}, {}, {}, {} ({:.1} % hits), {:.1} s saved",
                plural(s.entries, "entry"),
                format_size(s.bytes),
                plural(s.hits, "hit"),
                plural(s.misses, "miss"),
                s.hit_ratio() * 100.0,
                s.ms_saved as f64 / 1000.0
            ),
            Err(e) => ui.warn(format_args!("cannot read cache statistics: {e}")),
        }
    }
}

/// Replay a hit's captured stdout and stderr.
fn replay(hit: &Hit) {
    // The reader of our output may be gone; that does not undo the hit.
    let _ = std::io::stdout().lock().write_all(&hit.stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().lock().write_all(&hit.stderr);
}

/// The first output that does not exist.
fn missing_output<'a>(cwd: &Path, outputs: &'a [String]) -> Option<&'a str> {
    outputs
        .iter()
        .find(|o| std::fs::symlink_metadata(cwd.join(o)).is_err())
        .map(String::as_str)
}

/// Read a successful run's outputs into its entry, with its exit code and cost (captured
/// streams not yet set).
fn run_entry(cache: &Cache<'_>, task: &Task<'_>, ran: &Ran) -> larder_client::Result<Prepared> {
    // `collect` keeps an output named twice (`--out dir --out dir/file`) once.
    let mut prepared =
        tokio::task::block_in_place(|| cache.collect(task.cwd, task.key, task.outputs, task.kind))?;
    prepared.entry.exit_code = Some(i32::from(ran.code));
    prepared.entry.cost_ms = u64::try_from(ran.cost.as_millis()).unwrap_or(u64::MAX);
    Ok(prepared)
}

/// After the status line: wait for the queued upload (or abandon it with `no_wait`), warn about
/// a failure or an abandoned upload, and trim when it was stored.
async fn finish_uploads(uploads: Uploads, no_wait: bool, cache: &Cache<'_>, ui: &Ui) {
    let mut abandoned = 0u64;
    for done in uploads.finish(no_wait).await {
        match done {
            Done::Stored(_) => trim(cache, ui).await,
            Done::Failed(msg) => ui.warn(format_args!("background upload failed: {msg}")),
            Done::Abandoned => abandoned += 1,
        }
    }
    if abandoned > 0 {
        ui.warn(format_args!(
            "abandoned {} (--no-wait): not stored",
            plural(abandoned, "background upload")
        ));
    }
}

/// Trim when a configured budget is exceeded (skipped if another process is trimming), and
/// say what it did.
async fn trim(cache: &Cache<'_>, ui: &Ui) {
    match cache.trim_if_over().await {
        Ok(None) => {}
        Ok(Some(report)) if report.skipped_locked => {
            ui.status("trim skipped: another larder process is trimming");
        }
        Ok(Some(report)) => ui.status(format_args!(
            "trimmed {} entries ({})",
            report.evicted_entries,
            format_size(report.evicted_bytes)
        )),
        Err(e) => unavailable(ui, e),
    }
}

/// Warn that the cache failed (`cache unavailable: storing the outputs: ...`, the whole
/// chain): the run goes on without it.
fn unavailable(ui: &Ui, e: larder_client::Error) {
    ui.warn(format_args!(
        "cache unavailable: {:#}",
        anyhow::Error::new(e)
    ));
}

/// A captured stream, or why it is incomplete (it is then not cached).
type Captured = Result<Vec<u8>, &'static str>;

/// A finished run of the command.
struct Ran {
    /// Its exit code (128 + signal when killed by a signal).
    code: u8,
    /// Wall time.
    cost: Duration,
    /// Captured stdout, or why it is incomplete.
    stdout: Captured,
    /// Captured stderr, likewise.
    stderr: Captured,
}

/// Run the command with stdin inherited and stdout/stderr passed through and captured.
/// Signals larder receives meanwhile are passed on to the command.
async fn run_command(argv: &[String]) -> std::io::Result<Ran> {
    let (program, rest) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (done_tx, done_rx) = watch::channel(false);
    let out = child
        .stdout
        .take()
        .map(|p| tokio::spawn(tee(p, tokio::io::stdout(), done_rx.clone())));
    let err = child
        .stderr
        .take()
        .map(|p| tokio::spawn(tee(p, tokio::io::stderr(), done_rx)));
    let status = wait_forwarding_signals(&mut child).await?;
    // The handlers stay installed: from now on a signal must stop larder itself, as it would
    // have without them (entries are written atomically, so stopping mid-store is safe).
    exit_on_signal();
    let cost = started.elapsed();
    let _ = done_tx.send(true);
    let join = |t: Option<tokio::task::JoinHandle<Captured>>| async move {
        match t {
            Some(t) => t.await.unwrap_or(Err("was lost")),
            None => Ok(Vec::new()),
        }
    };
    let stdout = join(out).await;
    let stderr = join(err).await;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 255,
    };
    Ok(Ran {
        code,
        cost,
        stdout,
        stderr,
    })
}

/// From now on, end the process on SIGINT, SIGTERM, SIGHUP or SIGQUIT as their default
/// disposition would. Tokio keeps its handlers installed once a
/// signal has been listened for, so without this those signals would be swallowed after the
/// wrapped command finished (while larder stores its outputs, say).
fn exit_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ];
    for (kind, number) in kinds {
        if let Ok(mut stream) = signal(kind) {
            tokio::spawn(async move {
                if stream.recv().await.is_some() {
                    eprintln!("larder: stopped by signal {number} while storing outputs");
                    die_by(number);
                }
            });
        }
    }
}

/// End the process as `sig` would have without handlers: commands a `cmd://` store is running
/// are killed first (their process groups), then the signal's default action ends larder.
fn die_by(sig: libc::c_int) -> ! {
    #[cfg(feature = "cmd")]
    larder_cmd::kill_all();
    // SAFETY: restoring the default action and raising the signal only affect this process,
    // which is meant to end here.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// Wait for the child, passing SIGINT, SIGTERM, SIGHUP and SIGQUIT on to it.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let pid = child.id();
    let forward = |sig: libc::c_int| {
        if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions. The child has not been reaped
            // (we are still waiting for it), so its pid cannot have been reused.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => forward(libc::SIGINT),
            _ = term.recv() => forward(libc::SIGTERM),
            _ = hup.recv() => forward(libc::SIGHUP),
            _ = quit.recv() => forward(libc::SIGQUIT),
        }
    }
}

/// Copy `from` to `to` as it arrives, keeping a copy of up to [`CAPTURE_LIMIT`] bytes.
///
/// The copy is incomplete when over the limit, after a read error, or when the pipe is still
/// open [`PIPE_GRACE`] after the command exited with nothing more arriving (a background process
/// inherited it; it keeps writing to a closed pipe once larder exits).
async fn tee<R, W>(mut from: R, mut to: W, mut done: watch::Receiver<bool>) -> Captured
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut captured = Ok(Vec::new());
    let mut passing = true;
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err("could not be read"),
            },
            () = idle_after_exit(&mut done) => return Err("was held open by a background process"),
        };
        let chunk = &buf[..n];
        if passing && (to.write_all(chunk).await.is_err() || to.flush().await.is_err()) {
            // Whoever read our output is gone; keep draining so the command is not blocked.
            passing = false;
        }
        if let Ok(c) = &mut captured {
            if c.len() + n > CAPTURE_LIMIT {
                captured = Err("was over 64 MiB");
            } else {
                c.extend_from_slice(chunk);
            }
        }
    }
    captured
}

/// Resolves [`PIPE_GRACE`] after the command has exited.
async fn idle_after_exit(done: &mut watch::Receiver<bool>) {
    let _ = done.wait_for(|d| *d).await;
    tokio::time::sleep(PIPE_GRACE).await;
}

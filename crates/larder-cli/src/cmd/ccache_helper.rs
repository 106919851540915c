//! `larder ccache-helper`: a remote storage helper for ccache 4.13 and later.
//!
//! For a `remote_storage` URL whose scheme it has no built-in backend for, ccache runs
//! `ccache-storage-<scheme>` with the URL, a Unix socket path, an idle time-out and the URL's
//! `@key=value` attributes in `CRSH_*` variables, and talks to it over the socket ([`wire`]).
//! Larder answers to those names (symlinks to the binary, made by `larder ccache-helper
//! install`) and to `larder ccache-helper`:
//!
//! - The store is the URL's: `s3://`, `minio://`, `gs://`, `larder+http(s)://` (larder's http
//!   store, for a `larder serve`), or any other larder store URL. It is opened as every command
//!   opens its stores ([`crate::stores::open`]), from larder's configuration (larder.toml,
//!   `LARDER_*`) with the attributes on top (`@read-only`, `@timeout=SECONDS`, `@local=true` or
//!   `@local=DIR` for a local cache tier in front of the remote, `@inline-limit`...). ccache keeps
//!   its own local cache, so there is no larder local tier unless one is configured.
//! - A value is an entry holding one output, under `ccache/<key in hex>`: the key `larder serve`
//!   gives the same value through ccache's HTTP storage, so both kinds of client share hits.
//! - One helper serves every ccache process at once: a task per connection.
//! - A hit on a plain `http://` `larder serve` that is the only store is one `GET` of the entry
//!   on a kept-alive connection, written and read by the helper itself ([`thin`]): each ccache
//!   process asks once and the helper idles in between, so a general HTTP client runs cold on
//!   every hit. Everything else (other stores, tiers, writes) goes through the store.
//! - A store that fails answers `<err>` and a short message: ccache counts an error and
//!   compiles. After a time-out or a failed connection, requests are answered at once with that
//!   error for `@retry-after` seconds (default 30), then the store is tried again. With a local
//!   tier, a remote that fails is skipped for `@retry-after` seconds likewise (the tiers'
//!   best-effort layer) while the local tier goes on answering.
//! - ccache discards the helper's stderr: it logs to `@log-file=PATH` or `LARDER_LOG_FILE`.
//! - The helper exits after `CRSH_IDLE_TIMEOUT` seconds with no client connected, on a `stop`
//!   request, and on SIGTERM or SIGINT, removing its socket.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use larder_core::{
    Content, Digest, Entry, Error, ErrorKind, GetOptions, Key, Output, OutputKind, PutOptions,
    PutOutcome, Store, StoreExt,
};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::{Ctx, EXIT_OK};
use crate::config::{Config, Setting, Source};

mod install;
mod start;
mod thin;
mod wire;

/// The file-name prefix ccache looks for: `ccache-storage-<scheme>`.
pub(crate) const NAME_PREFIX: &str = "ccache-storage-";

/// The key namespace of ccache's values (shared with `larder serve`'s ccache storage).
const KEY_NAMESPACE: &str = larder_core::layer::namespaces::CCACHE;

/// The output name of a value inside its entry (as `larder serve` stores ccache's values).
const VALUE_OUTPUT: &str = "value";

/// Values up to this size are kept inside their entry, unless `inline_limit` is configured (the
/// largest inline limit larder accepts).
const HELPER_INLINE_LIMIT: u64 = 1 << 20;

/// The largest entry the helper's direct lookup ([`thin`]) reads; a larger one is read through
/// the store. An entry holding a value of the largest inline size is a little over 1 MiB.
const THIN_MAX_ENTRY: u64 = 4 << 20;

/// The largest blob the helper's direct lookup reads (into memory, as the store's read does);
/// a larger one is read through the store.
const THIN_MAX_BLOB: u64 = 64 << 20;

/// The idle time-out when ccache gives none.
const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// How long a store that timed out or refused a connection is left alone.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The slowest transfer a blob read or write is given time for, in bytes per second, on top of
/// the time-out.
const MIN_TRANSFER_RATE: u64 = 1 << 20;

const ABOUT: &str = "\
Without a subcommand, serve ccache (4.13+) as its remote storage helper: ccache starts it with
CRSH_IPC_ENDPOINT, CRSH_URL, CRSH_IDLE_TIMEOUT and CRSH_ATTR_* set, under the name
ccache-storage-<scheme>. `larder ccache-helper install` creates those names.
`larder ccache-helper start URL` starts one before the build, for ccache's crsh: URL.

Example (S3):
  cargo install --path crates/larder-cli --features s3 && larder ccache-helper install
  export CCACHE_REMOTE_STORAGE='s3://my-bucket/ccache @timeout=5'

Attributes: @read-only, @timeout=SECONDS, @retry-after=SECONDS, @local=true|DIR (a larder
cache tier in front of the remote), @log-file=PATH, and any larder setting (@inline-limit=64K,
@compression=3).

ccache gives the helper no stderr: its warnings (a store that fails, a tier skipped) go to
@log-file, else to the file LARDER_LOG_FILE names, else nowhere. ccache's own log counts the
failures as remote storage errors.";

/// Serve ccache as its remote storage helper, or install the helper's names.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, after_help = ABOUT)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Create the names ccache runs (ccache-storage-s3, ...) as links to this binary
    Install(install::Args),
    /// Start a helper before the build and print its crsh: URL for CCACHE_REMOTE_STORAGE
    #[command(after_help = start::AFTER_HELP)]
    Start(start::Args),
}

/// The command line to parse: the process's, with `larder ccache-helper` in place of the
/// program name when larder runs under a helper's name (`ccache-storage-s3`).
pub(crate) fn argv() -> Vec<OsString> {
    helper_argv(std::env::args_os().collect())
}

fn helper_argv(mut args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    if invoked_as.is_some_and(|n| n.starts_with(NAME_PREFIX)) {
        args.splice(0..1, ["larder".into(), "ccache-helper".into()]);
    }
    args
}

/// Run `larder ccache-helper`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    match args.command {
        Some(Sub::Install(args)) => install::run(args),
        Some(Sub::Start(args)) => start::run(args, ctx),
        None => serve(ctx).await,
    }
}

/// What ccache tells the helper at start-up.
#[derive(Debug)]
struct Startup {
    endpoint: PathBuf,
    url: String,
    /// `None`: never exit for inactivity.
    idle: Option<Duration>,
    attrs: Vec<(String, String)>,
}

impl Startup {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Startup> {
        let (Some(endpoint), Some(url)) = (env("CRSH_IPC_ENDPOINT"), env("CRSH_URL")) else {
            bail!(
                "CRSH_IPC_ENDPOINT and CRSH_URL are not set: this is ccache's storage helper, started by ccache for its remote_storage URLs (see `larder ccache-helper --help`)"
            );
        };
        let idle = match env("CRSH_IDLE_TIMEOUT") {
            None => Some(DEFAULT_IDLE),
            Some(v) => {
                let secs: u64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("invalid CRSH_IDLE_TIMEOUT {v:?}"))?;
                (secs > 0).then(|| Duration::from_secs(secs))
            }
        };
        let n: usize = match env("CRSH_NUM_ATTR") {
            None => 0,
            Some(v) => v
                .trim()
                .parse()
                .with_context(|| format!("invalid CRSH_NUM_ATTR {v:?}"))?,
        };
        let attrs = (0..n)
            .map(|i| {
                let key = env(&format!("CRSH_ATTR_KEY_{i}")).unwrap_or_default();
                let value = env(&format!("CRSH_ATTR_VALUE_{i}")).unwrap_or_default();
                (key, value)
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Ok(Startup {
            endpoint: PathBuf::from(endpoint),
            url,
            idle,
            attrs,
        })
    }
}

/// Where the helper logs: ccache gives it no stderr (it is /dev/null), so warnings (a failing
/// store, a tier skipped) go to the file named by `@log-file=PATH`, else by `LARDER_LOG_FILE`,
/// else nowhere.
pub(crate) fn log_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let from_attrs = Startup::from_env(env).ok().and_then(|s| {
        s.attrs
            .into_iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("log-file"))
            .map(|(_, v)| v.trim().to_owned())
    });
    from_attrs
        .or_else(|| env("LARDER_LOG_FILE"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether a larder cache tier goes in front of the remote store (`@local`).
#[derive(Debug, PartialEq, Eq)]
enum Local {
    /// As larder's configuration says, when it says so explicitly; else none.
    Unset,
    /// The default cache directory in front.
    On,
    /// No local tier.
    Off,
    /// This directory in front.
    Dir(String),
}

/// The helper's settings, from the URL and ccache's attributes.
#[derive(Debug)]
struct Plan {
    /// Setting flags for [`Ctx::config`]: the store, then the attributes that name settings.
    flags: Vec<(&'static str, String, &'static str)>,
    local: Local,
    retry_after: Duration,
    /// Messages for ccache's log: attributes this helper does not use.
    notes: Vec<String>,
}

/// The larder store URL for a helper URL: `larder+http(s)://` is larder's http store; anything
/// else is a larder store URL as it is (`s3://`, `minio://`, `gs://`, `opendal+...://`).
fn store_url(url: &str) -> Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("CRSH_URL {url:?} is not a URL (SCHEME://...)");
    };
    Ok(match scheme.to_ascii_lowercase().as_str() {
        "larder+http" => format!("http://{rest}"),
        "larder+https" => format!("https://{rest}"),
        _ => url.to_owned(),
    })
}

impl Plan {
    fn new(url: &str, attrs: &[(String, String)]) -> Result<Plan> {
        let store = store_url(url)?;
        let mut plan = Plan {
            flags: Vec::new(),
            local: Local::Unset,
            retry_after: DEFAULT_RETRY_AFTER,
            notes: Vec::new(),
        };
        for (key, value) in attrs {
            let name = key.trim().to_ascii_lowercase().replace('-', "_");
            // The source shown in configuration errors; a few attributes per helper process.
            let label: &'static str = Box::leak(format!("@{key}").into_boxed_str());
            match name.as_str() {
                "local" => {
                    plan.local = match value.trim().to_ascii_lowercase().as_str() {
                        "" | "1" | "true" | "yes" | "on" => Local::On,
                        "0" | "false" | "no" | "off" => Local::Off,
                        _ => Local::Dir(value.trim().to_owned()),
                    }
                }
                "timeout" | "request_timeout" => {
                    plan.flags.push(("remote_timeout", value.clone(), label));
                }
                "retry_after" => {
                    let secs: f64 = value
                        .trim()
                        .trim_end_matches('s')
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 1e9)
                        .ok_or_else(|| {
                            anyhow!("invalid {label}: expected seconds, got {value:?}")
                        })?;
                    plan.retry_after = Duration::from_secs_f64(secs);
                }
                // Read before logging starts (see [`log_file`]).
                "log_file" => {}
                "store" => plan
                    .notes
                    .push(format!("attribute {label} ignored: the store is the URL")),
                _ => match crate::config::setting_name(&name) {
                    Some(setting) => plan.flags.push((setting, value.clone(), label)),
                    None => plan
                        .notes
                        .push(format!("unknown attribute {label} ignored")),
                },
            }
        }
        let stores = match &plan.local {
            Local::Dir(dir) => format!("{dir}\n{store}"),
            _ => store,
        };
        plan.flags.insert(0, ("store", stores, "CRSH_URL"));
        Ok(plan)
    }

    /// The configuration: larder's own, under the URL and attributes.
    fn config(&self, ctx: &Ctx) -> Result<Config> {
        let mut config = ctx.config(self.flags.clone())?;
        let no_local = match self.local {
            Local::On => Some(false),
            Local::Off | Local::Dir(_) => Some(true),
            // ccache has its own local cache: a second one only when larder's configuration
            // asks for it by name (`local = true`, LARDER_NO_LOCAL=0).
            Local::Unset => (config.no_local.source == Source::Default).then_some(true),
        };
        if let Some(value) = no_local {
            config.no_local = Setting {
                value,
                source: Source::Flag("@local"),
            };
        }
        // A hit is one request to the store when the value is inside its entry, two when it is
        // a blob beside it; ccache's values are already compressed, and rarely over 1 MiB.
        if config.inline_limit.source == Source::Default {
            config.inline_limit = Setting {
                value: HELPER_INLINE_LIMIT,
                source: Source::Default,
            };
        }
        Ok(config)
    }
}

/// The larder key of a ccache key: its bytes in hex below [`KEY_NAMESPACE`]`/`. A key too long for
/// larder's keys (ccache's are 20 bytes) is named by its BLAKE3 digest instead.
fn larder_key(key: &[u8]) -> Key {
    use std::fmt::Write;
    let prefix_len = KEY_NAMESPACE.len() + 1;
    let mut name = String::with_capacity(prefix_len + 2 * key.len());
    name.push_str(KEY_NAMESPACE);
    name.push('/');
    if prefix_len + 2 * key.len() <= larder_core::key::MAX_KEY_LEN && !key.is_empty() {
        for b in key {
            let _ = write!(name, "{b:02x}");
        }
    } else {
        name.push_str("b3-");
        name.push_str(&larder_core::Digest::of(key).to_hex());
    }
    // Hex digits below a fixed prefix always make a valid key.
    Key::new(name).unwrap_or_else(|_| unreachable!("hex keys are valid"))
}

/// Serve ccache until idle, stopped or signalled.
async fn serve(ctx: &Ctx) -> Result<u8> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let startup = Startup::from_env(&env)?;
    // The socket first: ccache waits for it, and a helper that cannot listen must exit at once.
    let (listener, identity) = bind(&startup.endpoint)?;
    listener
        .set_nonblocking(true)
        .context("cannot make the socket non-blocking")?;
    let listener =
        tokio::net::UnixListener::from_std(listener).context("cannot listen on the socket")?;

    // A store that cannot be opened (a bad URL, missing credentials) answers every request
    // with the reason, rather than leaving ccache to time out on a helper that exited.
    let mut notes = Vec::new();
    let backend = match Plan::new(&startup.url, &startup.attrs) {
        Ok(plan) => {
            notes.extend(plan.notes.iter().cloned());
            plan.config(ctx)
                .and_then(|config| open(ctx, &config, &plan))
                .map_err(|e| format!("{e:#}"))
        }
        Err(e) => Err(format!("{e:#}")),
    };
    for note in &notes {
        tracing::warn!("ccache helper: {note}");
    }
    if let Err(e) = &backend {
        tracing::warn!("ccache helper: {e}");
    }
    let helper = Arc::new(Helper {
        backend,
        url: startup.url.clone(),
        notes,
        activity: Activity::new(),
        stop: Notify::new(),
    });
    // The first hit would open the connection to the server: open it while ccache connects.
    let ahead = Arc::clone(&helper);
    tokio::spawn(async move {
        if let Ok(backend) = &ahead.backend
            && let Some(thin) = &backend.thin
        {
            thin.connect_ahead(backend.timeout).await;
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    helper.activity.connected();
                    tokio::spawn(helper.clone().converse(stream));
                }
                Err(e) => {
                    tracing::warn!("ccache helper: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = helper.stop.notified() => break,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            () = helper.activity.idle_for(startup.idle) => break,
        }
    }
    // Stop taking connections first, then leave: requests in flight are not waited for.
    remove_socket(&startup.endpoint, identity);
    drop(listener);
    if let Ok(b) = &helper.backend {
        let _ = tokio::time::timeout(Duration::from_secs(1), b.store.flush()).await;
    }
    std::process::exit(i32::from(EXIT_OK));
}

/// Open the store with the plan's extras.
fn open(ctx: &Ctx, config: &Config, plan: &Plan) -> Result<Backend> {
    let opened = ctx.open_long_lived(config, plan.retry_after)?;
    let timeout = config.remote_timeout.value;
    Ok(Backend {
        store: opened.store,
        timeout,
        no_push: config.no_push.value,
        inline_limit: config.inline_limit.value,
        breaker: Breaker::new(plan.retry_after),
        thin: thin_client(config),
    })
}

/// The direct lookup ([`thin`]) when the store is one plain `http://` `larder serve` whose
/// entries are taken as they are: no tiers (a local tier in front), no signatures to check,
/// no credentials in the URL. Anything else reads through the store.
fn thin_client(config: &Config) -> Option<thin::ThinClient> {
    let [url] = &config.store.value[..] else {
        return None;
    };
    if !config.no_local.value || !config.trust_require.value.is_empty() {
        return None;
    }
    // `?read-only` and trim budgets concern writes only.
    let (url, _) = crate::stores::tier_params(url).ok()?;
    let token = std::env::var("LARDER_TOKEN").ok().filter(|t| !t.is_empty());
    thin::ThinClient::new(&url, token.as_deref())
}

/// Bind `path` as a socket only its owner can use (umask 077, then mode 0600), creating a
/// missing parent directory with mode 0700. A socket left behind by a helper that died (no one
/// answers on it) is replaced; one a live helper answers on is an error. Returns the listener
/// and the socket file's (device, inode), so that only this socket is removed at exit.
fn bind(path: &Path) -> Result<(std::os::unix::net::UnixListener, (u64, u64))> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let listener = match bind_private(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            let refused = std::os::unix::net::UnixStream::connect(path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
            if !(is_socket && refused) {
                bail!(
                    "cannot listen on {}: another helper is listening there, or it is not a socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
            bind_private(path)
        }
        other => other,
    }
    .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((listener, (meta.dev(), meta.ino())))
}

/// `bind(2)` under umask 077, so the socket is never reachable by others, not even briefly.
fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    // The umask is the process's: set and restored around the bind, at start-up, before any
    // other file is created.
    // SAFETY: umask(2) cannot fail and only swaps the file mode creation mask.
    let old = unsafe { libc::umask(0o077) };
    let listener = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    listener
}

/// Remove the socket at `path` if it is still the one this helper bound.
fn remove_socket(path: &Path, identity: (u64, u64)) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && (meta.dev(), meta.ino()) == identity
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Connections and when the last one did something: the idle time-out counts from the last
/// connection closing.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn connected(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    fn disconnected(&self) {
        self.touch();
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    /// Resolves once no client has been connected for `idle` (never for `None`).
    async fn idle_for(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let since = self.last.lock().map(|l| l.elapsed()).unwrap_or_default();
            if self.open.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(idle).await;
            } else if since >= idle {
                return;
            } else {
                tokio::time::sleep(idle - since).await;
            }
        }
    }
}

/// A store that timed out or could not be reached is left alone for a while: requests get the
/// error at once instead of each waiting for its own time-out.
#[derive(Debug)]
struct Breaker {
    retry_after: Duration,
    down: Mutex<Option<(Instant, String)>>,
}

impl Breaker {
    fn new(retry_after: Duration) -> Breaker {
        Breaker {
            retry_after,
            down: Mutex::new(None),
        }
    }

    /// The error to answer with while the store is left alone.
    fn check(&self) -> Option<String> {
        let mut down = self.down.lock().ok()?;
        match &*down {
            Some((since, message)) if since.elapsed() < self.retry_after => Some(message.clone()),
            Some(_) => {
                // Time to try again.
                *down = None;
                None
            }
            None => None,
        }
    }

    fn trip(&self, message: &str) {
        if self.retry_after.is_zero() {
            return;
        }
        if let Ok(mut down) = self.down.lock() {
            if down.is_none() {
                tracing::warn!(
                    "ccache helper: {message}; not trying again for {} s",
                    self.retry_after.as_secs_f64()
                );
            }
            *down = Some((Instant::now(), message.to_owned()));
        }
    }
}

/// The open store and how it is used.
#[derive(Debug)]
struct Backend {
    store: Arc<dyn Store>,
    timeout: Duration,
    no_push: bool,
    inline_limit: u64,
    breaker: Breaker,
    /// The direct lookup, for a plain `http://` `larder serve` on its own (see
    /// [`thin_client`]).
    thin: Option<thin::ThinClient>,
}

/// What a store call failed with: a message for ccache.
type Failed = String;

impl Backend {
    /// The time a blob transfer of `size` bytes may take.
    fn transfer_budget(&self, size: u64) -> Duration {
        self.timeout + Duration::from_secs(size / MIN_TRANSFER_RATE)
    }

    /// Run one store call within `budget`. A time-out or a temporary error (a refused or reset
    /// connection) trips the breaker.
    async fn call<T>(
        &self,
        budget: Duration,
        call: impl Future<Output = larder_core::Result<T>>,
    ) -> Result<T, Failed> {
        if let Some(message) = self.breaker.check() {
            return Err(message);
        }
        match tokio::time::timeout(budget, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let message = format!("{e}");
                if e.is_temporary() {
                    self.breaker.trip(&message);
                }
                Err(message)
            }
            Err(_) => {
                let message = format!(
                    "{} did not answer within {} s",
                    self.store,
                    budget.as_secs_f64()
                );
                self.breaker.trip(&message);
                Err(message)
            }
        }
    }

    /// The value under `key`, if any. Corrupt or vanished data is a miss.
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, Failed> {
        let Some(thin) = &self.thin else {
            return self.get_through_store(key, self.timeout).await;
        };
        if let Some(message) = self.breaker.check() {
            return Err(message);
        }
        let start = Instant::now();
        // Named only for a message: a hit formats nothing.
        let what = || format!("{}: entry {key}", self.store);
        match thin
            .get_entry(key.as_str(), THIN_MAX_ENTRY, self.timeout)
            .await
        {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => match Entry::decode(&bytes) {
                Ok(entry) => self.value_of(entry).await,
                Err(e) => {
                    tracing::warn!("ccache helper: {}: {e}: a miss", what());
                    Ok(None)
                }
            },
            Err(e) => match self.after_thin_failure(&what(), e, true) {
                Some(answer) => answer,
                None => {
                    let left = self.timeout.saturating_sub(start.elapsed());
                    self.get_through_store(key, left).await
                }
            },
        }
    }

    /// The answer after a direct lookup ([`thin`]) failed with `e`, or `None` to ask the store
    /// instead: after a refused or broken connection or an error status (the store answers
    /// with its retries and messages), and for a body over the limit when `too_large_is_ours`
    /// is false. A time-out is an error and trips the breaker; a malformed answer is a miss.
    fn after_thin_failure(
        &self,
        what: &str,
        e: thin::ThinError,
        too_large_is_ours: bool,
    ) -> Option<Result<Option<Vec<u8>>, Failed>> {
        match e {
            thin::ThinError::Timeout(_) => {
                let message = format!("{what}: {e}");
                self.breaker.trip(&message);
                Some(Err(message))
            }
            e if e.is_temporary()
                || (too_large_is_ours && matches!(e, thin::ThinError::TooLarge(_))) =>
            {
                tracing::debug!("ccache helper: {what}: {e}; asking through the store");
                None
            }
            e => {
                tracing::warn!("ccache helper: {what}: {e}: a miss");
                Some(Ok(None))
            }
        }
    }

    /// [`Backend::get`] through the store, the entry read within `budget`.
    async fn get_through_store(
        &self,
        key: &Key,
        budget: Duration,
    ) -> Result<Option<Vec<u8>>, Failed> {
        if budget.is_zero() {
            let message = format!("{}: entry {key}: no answer in time", self.store);
            self.breaker.trip(&message);
            return Err(message);
        }
        let read = async {
            match self.store.get_entry(key).await {
                Err(e) if miss(&e) => Ok(None),
                other => other,
            }
        };
        let Some(entry) = self.call(budget, read).await? else {
            return Ok(None);
        };
        self.value_of(entry).await
    }

    /// The value an entry holds: inside it, or read from its blob.
    async fn value_of(&self, entry: Entry) -> Result<Option<Vec<u8>>, Failed> {
        let Some(content) = value_content(entry) else {
            return Ok(None);
        };
        if let Some(bytes) = content.inline {
            return Ok(Some(bytes.into_vec()));
        }
        let budget = self.transfer_budget(content.size);
        let start = Instant::now();
        if let Some(thin) = &self.thin
            && content.digest.func() == larder_core::HashFn::Blake3
            && content.size <= THIN_MAX_BLOB
        {
            let what = || format!("{}: blob {}", self.store, content.digest);
            // The body may be no longer than the blob.
            match thin
                .get_blob(&content.digest.to_hex(), content.size, budget)
                .await
            {
                Ok(None) => return Ok(None),
                Ok(Some(bytes))
                    if bytes.len() as u64 == content.size
                        && Digest::of(&bytes) == content.digest =>
                {
                    return Ok(Some(bytes));
                }
                Ok(Some(_)) => {
                    tracing::warn!(
                        "ccache helper: {}: does not match its digest: a miss",
                        what()
                    );
                    return Ok(None);
                }
                Err(e) => {
                    if let Some(answer) = self.after_thin_failure(&what(), e, false) {
                        return answer;
                    }
                }
            }
        }
        let budget = budget.saturating_sub(start.elapsed());
        if budget.is_zero() {
            let message = format!("{}: blob {}: no answer in time", self.store, content.digest);
            self.breaker.trip(&message);
            return Err(message);
        }
        let read = async {
            match self
                .store
                .get_blob_bytes(&content.digest, content.size)
                .await
            {
                Err(e) if miss(&e) => Ok(None),
                other => other,
            }
        };
        self.call(budget, read).await
    }

    /// Store `value` under `key`: `Ok(false)` when it was not stored (kept the value already
    /// there without `overwrite`, or the store is read-only).
    async fn put(&self, key: &Key, overwrite: bool, value: Vec<u8>) -> Result<bool, Failed> {
        if self.no_push {
            return Ok(false);
        }
        let size = value.len() as u64;
        let opts = if overwrite {
            PutOptions::default()
        } else {
            PutOptions::create()
        };
        let content = if size <= self.inline_limit {
            Content::inline(value)
        } else {
            if !overwrite {
                // Skip the upload when the value is there already.
                let mut get = GetOptions::default();
                get.record_access = false;
                let read = self.store.get_entry_opts(key, get);
                if self.call(self.timeout, read).await?.is_some() {
                    return Ok(false);
                }
            }
            let upload = async {
                match self.store.put_blob_bytes(value.into()).await {
                    // A read-only store: not stored.
                    Err(Error::NotSupported { .. }) => Ok(None),
                    other => other.map(Some),
                }
            };
            let Some(digest) = self.call(self.transfer_budget(size), upload).await? else {
                return Ok(false);
            };
            Content::blob(digest, size)
        };
        let mut entry = Entry::new(key.as_str(), "ccache");
        entry.outputs.push(Output {
            path: VALUE_OUTPUT.into(),
            kind: OutputKind::File {
                content,
                executable: false,
            },
        });
        let write = async {
            match self.store.put_entry_opts(key, &entry, opts).await {
                Err(Error::NotSupported { .. }) => Ok(None),
                other => other.map(Some),
            }
        };
        match self.call(self.timeout, write).await? {
            Some(PutOutcome::Written) => Ok(true),
            Some(PutOutcome::Exists) | None => Ok(false),
        }
    }

    /// Remove the value under `key`: `Ok(false)` when there was none (or the store is
    /// read-only).
    async fn remove(&self, key: &Key) -> Result<bool, Failed> {
        let delete = async {
            match self.store.delete(key).await {
                Err(Error::NotSupported { .. }) => Ok(false),
                other => other,
            }
        };
        self.call(self.timeout, delete).await
    }
}

/// Errors that mean "not in the cache" for a read.
fn miss(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::NotFound => true,
        ErrorKind::Corrupt => {
            tracing::warn!("ccache helper: {e}: a miss");
            true
        }
        _ => false,
    }
}

/// The value's content in an entry this helper (or `larder serve`) stored.
fn value_content(entry: Entry) -> Option<Content> {
    entry.outputs.into_iter().find_map(|o| match o.kind {
        OutputKind::File { content, .. } if o.path == VALUE_OUTPUT => Some(content),
        _ => None,
    })
}

/// The running helper.
#[derive(Debug)]
struct Helper {
    backend: Result<Backend, String>,
    url: String,
    notes: Vec<String>,
    activity: Activity,
    stop: Notify,
}

impl Helper {
    /// Talk to one ccache process until it hangs up.
    async fn converse(self: Arc<Self>, stream: UnixStream) {
        if let Err(e) = self.requests(stream).await {
            tracing::debug!("ccache helper: connection closed: {e}");
        }
        self.activity.disconnected();
    }

    async fn requests(&self, stream: UnixStream) -> Result<(), wire::ReadError> {
        let (r, w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut w = BufWriter::new(w);
        wire::write_greeting(&mut w).await?;
        loop {
            let request = match wire::read_request(&mut r).await {
                Ok(Some(request)) => request,
                Ok(None) => return Ok(()),
                Err(e @ wire::ReadError::TooLarge(_)) => {
                    // The value was not read: answer, then hang up.
                    wire::write_err(&mut w, &e.to_string()).await?;
                    w.flush().await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            self.activity.touch();
            match request {
                wire::Request::Get { key } => match self.get(&key).await {
                    Ok(Some(value)) => wire::write_value(&mut w, &value).await?,
                    Ok(None) => wire::write_noop(&mut w).await?,
                    Err(message) => wire::write_err(&mut w, &message).await?,
                },
                wire::Request::Put {
                    key,
                    overwrite,
                    value,
                } => match self.put(&key, overwrite, value).await {
                    Ok(true) => wire::write_ok(&mut w).await?,
                    Ok(false) => wire::write_noop(&mut w).await?,
                    Err(message) => wire::write_err(&mut w, &message).await?,
                },
                wire::Request::Remove { key } => match self.remove(&key).await {
                    Ok(true) => wire::write_ok(&mut w).await?,
                    Ok(false) => wire::write_noop(&mut w).await?,
                    Err(message) => wire::write_err(&mut w, &message).await?,
                },
                wire::Request::Stop => {
                    // The answer may not arrive: the helper is leaving.
                    let _ = wire::write_ok(&mut w).await;
                    let _ = w.flush().await;
                    self.stop.notify_one();
                    return Ok(());
                }
                wire::Request::Info => {
                    let identity = match &self.backend {
                        Ok(b) => format!(
                            "larder {} ccache storage helper: {}",
                            env!("CARGO_PKG_VERSION"),
                            b.store
                        ),
                        Err(_) => format!(
                            "larder {} ccache storage helper: {} (not open)",
                            env!("CARGO_PKG_VERSION"),
                            self.url
                        ),
                    };
                    let mut notes = self.notes.clone();
                    if let Err(e) = &self.backend {
                        notes.push(e.clone());
                    }
                    wire::write_info(&mut w, &identity, &notes).await?;
                }
            }
            w.flush().await?;
        }
    }

    fn backend(&self) -> Result<&Backend, Failed> {
        self.backend
            .as_ref()
            .map_err(|e| format!("cannot open the store: {e}"))
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Failed> {
        self.backend()?.get(&larder_key(key)).await
    }

    async fn put(&self, key: &[u8], overwrite: bool, value: Vec<u8>) -> Result<bool, Failed> {
        self.backend()?
            .put(&larder_key(key), overwrite, value)
            .await
    }

    async fn remove(&self, key: &[u8]) -> Result<bool, Failed> {
        self.backend()?.remove(&larder_key(key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend on the `larder serve` at `url`, read through the direct lookup.
    fn http_backend(url: &str, timeout: Duration) -> Backend {
        let store = larder_http::HttpStore::builder(format!("{url}/v1"))
            .read_timeout(timeout)
            .request_timeout(timeout)
            .build()
            .unwrap();
        Backend {
            store: Arc::new(store),
            timeout,
            no_push: false,
            inline_limit: HELPER_INLINE_LIMIT,
            breaker: Breaker::new(Duration::from_secs(30)),
            thin: thin::ThinClient::new(url, None),
        }
    }

    /// A server on loopback that answers every request with `answer`, then holds the
    /// connection open.
    fn hostile(answer: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(answer);
                    std::thread::sleep(Duration::from_secs(30));
                });
            }
        });
        url
    }

    #[test]
    fn a_broken_answer_is_a_miss_and_a_silent_server_an_error_in_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = larder_key(b"k");
        // Not an entry, or not HTTP: a miss.
        for answer in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk".as_slice(),
            b"220 smtp.example.com ESMTP\r\n\r\n",
        ] {
            let backend = http_backend(&hostile(answer), Duration::from_secs(5));
            assert!(backend.thin.is_some());
            assert_eq!(rt.block_on(backend.get(&key)), Ok(None));
        }
        // No answer: an error once the time-out has passed, and the breaker is tripped.
        let timeout = Duration::from_millis(300);
        let backend = http_backend(&hostile(b""), timeout);
        let start = Instant::now();
        let err = rt.block_on(backend.get(&key)).unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(backend.breaker.check().is_some());
    }

    /// A server on loopback that answers `GET .../entries/...` with `entry` and
    /// `GET .../blobs/...` with `blob` (bodies with a Content-Length), on kept-alive
    /// connections.
    fn entry_and_blob_server(entry: Vec<u8>, blob: Vec<u8>) -> String {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new((entry, blob));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let bodies = Arc::clone(&bodies);
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut head = String::new();
                        let mut line = String::new();
                        while line != "\r\n" {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            head.push_str(&line);
                        }
                        let body = if head.contains("/entries/") {
                            &bodies.0
                        } else {
                            &bodies.1
                        };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        let _ = stream.write_all(answer.as_bytes());
                        let _ = stream.write_all(body);
                    }
                });
            }
        });
        url
    }

    #[test]
    fn a_value_in_a_blob_is_read_directly_and_checked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = larder_key(b"k");
        let value = vec![7u8; 200_000];
        let mut entry = Entry::new(key.as_str(), "ccache");
        entry.outputs.push(Output {
            path: VALUE_OUTPUT.into(),
            kind: OutputKind::File {
                content: Content::blob(Digest::of(&value), value.len() as u64),
                executable: false,
            },
        });
        let encoded = entry.encode().unwrap();
        let good = http_backend(
            &entry_and_blob_server(encoded.clone(), value.clone()),
            Duration::from_secs(5),
        );
        assert_eq!(rt.block_on(good.get(&key)), Ok(Some(value.clone())));
        // A blob that is not the one named, or longer than its size: a miss.
        let mut other = value.clone();
        other[0] = 8;
        let backend = http_backend(
            &entry_and_blob_server(encoded.clone(), other),
            Duration::from_secs(5),
        );
        assert_eq!(rt.block_on(backend.get(&key)), Ok(None));
        let mut longer = value;
        longer.push(7);
        let backend = http_backend(
            &entry_and_blob_server(encoded, longer),
            Duration::from_secs(5),
        );
        assert_eq!(rt.block_on(backend.get(&key)), Ok(None));
    }

    #[test]
    fn only_a_lone_plain_http_store_is_looked_up_directly() {
        let config = |stores: &[&str], no_local: bool| {
            let env = |name: &str| (name == "HOME").then(|| "/h".to_owned());
            let mut config = Config::resolve(&crate::config::Inputs {
                cwd: Path::new("/"),
                config_flag: None,
                flags: vec![("store", stores.join("\n"), "--store")],
                env: &env,
            })
            .unwrap();
            config.no_local.value = no_local;
            config
        };
        assert!(thin_client(&config(&["http://h:1"], true)).is_some());
        assert!(thin_client(&config(&["http://h:1/v1?read-only"], true)).is_some());
        assert!(thin_client(&config(&["http://h:1"], false)).is_none());
        assert!(thin_client(&config(&["/tmp/tier", "http://h:1"], true)).is_none());
        assert!(thin_client(&config(&["https://h:1"], true)).is_none());
        assert!(thin_client(&config(&["s3://b/p"], true)).is_none());
    }

    #[test]
    fn keys_are_hex_in_their_namespace() {
        let key = larder_key(&[0x00, 0xab, 0xff]);
        assert_eq!(key.as_str(), "ccache/00abff");
        let long = larder_key(&[7u8; 255]);
        assert!(long.as_str().starts_with("ccache/b3-"), "{long}");
        assert!(long.as_str().len() <= larder_core::key::MAX_KEY_LEN);
    }

    #[test]
    fn urls_map_to_larder_stores() {
        assert_eq!(
            store_url("larder+http://h:7180/x").unwrap(),
            "http://h:7180/x"
        );
        assert_eq!(store_url("LARDER+HTTPS://h/").unwrap(), "https://h/");
        assert_eq!(store_url("s3://b/p").unwrap(), "s3://b/p");
        assert_eq!(store_url("minio://h:1/b/p").unwrap(), "minio://h:1/b/p");
        assert!(store_url("nonsense").is_err());
    }

    #[test]
    fn startup_comes_from_the_environment() {
        let vars = [
            ("CRSH_IPC_ENDPOINT", "/run/x.sock"),
            ("CRSH_URL", "s3://b/p"),
            ("CRSH_IDLE_TIMEOUT", "0"),
            ("CRSH_NUM_ATTR", "2"),
            ("CRSH_ATTR_KEY_0", "read-only"),
            ("CRSH_ATTR_VALUE_0", "true"),
            ("CRSH_ATTR_KEY_1", "timeout"),
            ("CRSH_ATTR_VALUE_1", "3"),
        ];
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let s = Startup::from_env(&env).unwrap();
        assert_eq!(s.endpoint, PathBuf::from("/run/x.sock"));
        assert_eq!(s.idle, None, "0 means stay up");
        assert_eq!(
            s.attrs,
            vec![
                ("read-only".to_owned(), "true".to_owned()),
                ("timeout".to_owned(), "3".to_owned())
            ]
        );
        assert!(Startup::from_env(&|_| None).is_err());
    }

    #[test]
    fn attributes_become_settings() {
        let attrs = [
            ("read-only", "true"),
            ("timeout", "2.5"),
            ("inline-limit", "64K"),
            ("retry-after", "5"),
            ("local", "/tmp/tier"),
            ("colour", "blue"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let plan = Plan::new("larder+http://h:1", &attrs).unwrap();
        let flags: Vec<(&str, &str)> = plan
            .flags
            .iter()
            .map(|(name, value, _)| (*name, value.as_str()))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("store", "/tmp/tier\nhttp://h:1"),
                ("read_only", "true"),
                ("remote_timeout", "2.5"),
                ("inline_limit", "64K"),
            ]
        );
        assert_eq!(plan.local, Local::Dir("/tmp/tier".into()));
        assert_eq!(plan.retry_after, Duration::from_secs(5));
        assert_eq!(plan.notes, vec!["unknown attribute @colour ignored"]);
        let on = Plan::new("s3://b", &[("local".into(), "true".into())]).unwrap();
        assert_eq!(on.local, Local::On);
    }

    #[test]
    fn a_helper_name_runs_the_helper() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            helper_argv(args(&["/home/u/.local/bin/ccache-storage-s3"])),
            args(&["larder", "ccache-helper"])
        );
        assert_eq!(
            helper_argv(args(&["ccache-storage-larder+http", "--help"])),
            args(&["larder", "ccache-helper", "--help"])
        );
        assert_eq!(
            helper_argv(args(&["/usr/bin/larder", "stats"])),
            args(&["/usr/bin/larder", "stats"])
        );
    }
}

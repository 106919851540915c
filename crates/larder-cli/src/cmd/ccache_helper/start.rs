//! `larder ccache-helper start URL [@ATTR=VALUE ...]`: a helper started before the build, for
//! ccache's `crsh:SOCKET` remote storage URL.
//!
//! ccache starts a helper at the first compile that needs one, under a spawn lock: a compile
//! that finds the lock taken sleeps in ccache's lock back-off (tens of milliseconds) while the
//! helper starts. A CI job that starts the helper first and points ccache at its socket
//! (`crsh:PATH`, which ccache connects to and never spawns for) pays neither. This command starts
//! the helper detached from the terminal, with the `CRSH_*` variables ccache would give it,
//! waits until it answers on its socket, and prints the `crsh:` URL to use.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{DEFAULT_IDLE, Plan};
use crate::cmd::{Ctx, EXIT_OK};

/// How long the helper may take to answer on its socket.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The longest socket path (`sun_path` holds 108 bytes, the last one a NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Start a helper for ccache's `crsh:` URL.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store, as in CCACHE_REMOTE_STORAGE (larder+http://HOST:PORT, s3://BUCKET/PREFIX, ...)
    #[arg(value_name = "URL")]
    url: String,
    /// Attributes, as ccache's URL takes them (@timeout=5 @local=true)
    #[arg(value_name = "@ATTR=VALUE")]
    attrs: Vec<String>,
    /// The helper's socket (default: one per user and URL, below $XDG_RUNTIME_DIR or /tmp)
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Exit after this many seconds with no ccache connected; 0: run until stopped
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_IDLE.as_secs())]
    idle_timeout: u64,
}

pub(crate) const AFTER_HELP: &str = "\
Prints the crsh: URL to give ccache, so that a CI job can start the helper before its build:
  export CCACHE_REMOTE_STORAGE=$(larder ccache-helper start larder+http://cache:7180 @timeout=5)
ccache then connects to the running helper instead of starting one at its first compile (where
the other parallel compiles wait on ccache's spawn lock). When a helper already answers on the
socket, it is left running and its URL printed. Stop it with
  ccache --stop-storage-helpers   (with CCACHE_REMOTE_STORAGE=crsh:...)
or let it exit after --idle-timeout seconds with no ccache connected. As when ccache starts it,
the helper has no terminal: its warnings go to @log-file=PATH, else to LARDER_LOG_FILE.";

/// Run `larder ccache-helper start`.
pub(crate) fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let attrs = parse_attrs(&args.attrs)?;
    // The URL and attributes are checked here, where the error can be shown: the detached
    // helper would answer every request with it instead.
    let plan = Plan::new(&args.url, &attrs)?;
    let config = plan.config(ctx)?;
    drop(super::open(ctx, &config, &plan)?);
    let socket = match args.socket {
        Some(path) => path,
        None => default_socket(&args.url, &attrs)?,
    };
    let shown = socket.to_string_lossy().into_owned();
    if shown.len() > MAX_SOCKET_PATH {
        bail!(
            "the socket path {shown} is {} bytes, over the {MAX_SOCKET_PATH} a Unix socket path may have: give a shorter --socket",
            shown.len()
        );
    }
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        eprintln!("larder: a helper already answers on {shown}: leaving it running");
        println!("crsh:{shown}");
        return Ok(EXIT_OK);
    }
    let exe = std::env::current_exe().context("cannot tell where the larder binary is")?;
    let mut cmd = Command::new(&exe);
    cmd.arg("ccache-helper")
        .env("CRSH_IPC_ENDPOINT", &socket)
        .env("CRSH_URL", &args.url)
        .env("CRSH_IDLE_TIMEOUT", args.idle_timeout.to_string())
        .env("CRSH_NUM_ATTR", attrs.len().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Read while it starts, for the reason if it exits before listening.
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in the shell that started it does not stop it.
        .process_group(0);
    for (i, (key, value)) in attrs.iter().enumerate() {
        cmd.env(format!("CRSH_ATTR_KEY_{i}"), key)
            .env(format!("CRSH_ATTR_VALUE_{i}"), value);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} ccache-helper", exe.display()))?;
    let start = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().context("waiting for the helper")? {
            let mut why = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut why);
            }
            bail!(
                "the helper exited ({status}) before listening on {shown}: {}",
                why.trim()
            );
        }
        if start.elapsed() > READY_WITHIN {
            let _ = child.kill();
            bail!(
                "the helper did not listen on {shown} within {} s: stopped it",
                READY_WITHIN.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "larder: ccache helper for {} listening on {shown} (pid {})",
        args.url,
        child.id()
    );
    println!("crsh:{shown}");
    Ok(EXIT_OK)
}

/// `@key=value` (or `key=value`) arguments as attribute pairs.
fn parse_attrs(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            let a = a.strip_prefix('@').unwrap_or(a);
            match a.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
                _ => bail!("attribute {a:?} is not @KEY=VALUE"),
            }
        })
        .collect()
}

/// One socket per user, URL and attributes: below `$XDG_RUNTIME_DIR` when set, else below a
/// directory of the user's own in /tmp ([`private_dir`]).
fn default_socket(url: &str, attrs: &[(String, String)]) -> Result<PathBuf> {
    // SAFETY: getuid cannot fail and has no side effects.
    let uid = unsafe { libc::getuid() };
    let mut id = format!("{uid}\0{url}");
    for (k, v) in attrs {
        id.push('\0');
        id.push_str(k);
        id.push('\0');
        id.push_str(v);
    }
    let hex = larder_core::Digest::of(id.as_bytes()).to_hex();
    let name = format!("larder-ccache-{}.sock", &hex[..16]);
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => private_dir(&Path::new("/tmp").join(format!("larder-ccache-{uid}")), uid)?,
    };
    Ok(dir.join(name))
}

/// `dir`, created with mode 0700 when missing, and refused unless it is a directory (not a
/// link) of user `uid` that no one else may enter: in a shared /tmp, another user could
/// otherwise put a socket of theirs where ccache looks for the helper.
fn private_dir(dir: &Path, uid: u32) -> Result<PathBuf> {
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{} is not a private directory of this user (it must be a directory with mode 0700 that this user owns): give --socket or set XDG_RUNTIME_DIR",
            dir.display()
        );
    }
    Ok(dir.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn attributes_take_ccache_s_form() {
        let got = parse_attrs(&["@timeout=5".into(), "local=true".into(), "@x=a=b".into()])
            .expect("parsed");
        assert_eq!(
            got,
            [
                ("timeout".to_owned(), "5".to_owned()),
                ("local".to_owned(), "true".to_owned()),
                ("x".to_owned(), "a=b".to_owned()),
            ]
        );
        assert!(parse_attrs(&["@timeout".into()]).is_err());
        assert!(parse_attrs(&["@=5".into()]).is_err());
    }

    #[test]
    fn the_default_socket_differs_by_url_and_attributes() {
        let a = default_socket("larder+http://h:1", &[]).expect("path");
        let b = default_socket("larder+http://h:2", &[]).expect("path");
        let c =
            default_socket("larder+http://h:1", &[("timeout".into(), "5".into())]).expect("path");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, default_socket("larder+http://h:1", &[]).expect("path"));
    }

    #[test]
    fn a_directory_others_may_enter_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // SAFETY: as in default_socket.
        let uid = unsafe { libc::getuid() };
        let made = tmp.path().join("made");
        private_dir(&made, uid).expect("created");
        let mode = std::fs::metadata(&made).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        private_dir(&made, uid).expect("kept");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(private_dir(&open, uid).is_err());
        assert!(private_dir(&made, uid.wrapping_add(1)).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&made, &link).expect("symlink");
        assert!(private_dir(&link, uid).is_err());
    }
}

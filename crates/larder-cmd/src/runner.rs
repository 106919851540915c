//! Running one command: bounded concurrency, a time-out, the tail of its output kept for the
//! error message, and no orphans.
//!
//! Each command runs in its own process group, so a time-out or a cancelled operation kills
//! the whole tree (a script and the `sleep` it started), not only the direct child. The direct
//! child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with larder even when larder is killed
//! by a signal it does not handle. [`kill_all`] kills every running command's group, for a
//! caller's own SIGINT/SIGTERM handler.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use larder_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::template::display;

/// Bytes of stdout/stderr kept for error messages.
const TAIL_BYTES: usize = 2048;

/// Process groups of the commands running now.
static GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn register(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.get_or_insert_with(HashSet::new).insert(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock()
        && let Some(set) = g.as_mut()
    {
        set.remove(&pgid);
    }
}

/// Kill (SIGKILL) every command this process is running through a command store. For a
/// binary's SIGINT/SIGTERM handler, before it exits.
pub fn kill_all() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .ok()
        .and_then(|g| g.as_ref().map(|s| s.iter().copied().collect()))
        .unwrap_or_default();
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Kills the command's process group unless disarmed: on time-out, on error and when the
/// future running the command is dropped (cancelled).
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: as in `kill_all`.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
            unregister(pgid);
        }
    }

    fn disarm(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            unregister(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a finished command ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit code, `None` when killed by a signal.
    pub(crate) code: Option<i32>,
    /// The command line, quoted for display.
    pub(crate) command: String,
    /// The last bytes of stderr (and stdout), for messages.
    pub(crate) tail: String,
}

impl Finished {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The error for a command that did not succeed.
    pub(crate) fn error(&self, what: &str) -> Error {
        let status = match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_owned(),
        };
        let tail = if self.tail.is_empty() {
            String::from(" (no output)")
        } else {
            format!(":\n{}", self.tail)
        };
        Error::Store {
            store: crate::STORE.into(),
            message: format!("{what}: `{}` failed with {status}{tail}", self.command),
            temporary: false,
            source: None,
        }
    }
}

/// Read all of `r`, keeping only the last [`TAIL_BYTES`].
async fn tail_of<R: AsyncRead + Unpin>(r: Option<R>) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * TAIL_BYTES {
                    tail.drain(..tail.len() - TAIL_BYTES);
                }
            }
        }
    }
    if tail.len() > TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
    tail
}

/// The first SIGINT or SIGTERM (never, if they cannot be watched).
async fn interrupted() -> libc::c_int {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        },
        _ => std::future::pending().await,
    }
}

/// End the process the way `sig` would have, had nobody been watching it.
fn exit_by(sig: libc::c_int) -> ! {
    kill_all();
    // SAFETY: restoring the default action and raising the signal only affect this process,
    // which is meant to end here.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// Run `argv`, waiting at most `timeout`. A command that cannot start, or runs out of time, is
/// an error (the latter temporary); a command that exits is a [`Finished`], successful or not.
pub(crate) async fn run(
    what: &str,
    argv: &[String],
    timeout: Duration,
    exit_on_signal: bool,
) -> Result<Finished> {
    let command = display(argv);
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::invalid(format!("{what}: empty command")));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // The parent may have died before prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            let _ = parent;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::Store {
        store: crate::STORE.into(),
        message: format!("{what}: cannot run `{command}`: {e}"),
        temporary: false,
        source: Some(Box::new(e)),
    })?;
    let pgid = child.id().map(|p| p as i32);
    if let Some(p) = pgid {
        register(p);
    }
    let mut guard = GroupGuard { pgid };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let waiting = tokio::time::timeout(timeout, async {
        tokio::join!(child.wait(), tail_of(stdout), tail_of(stderr))
    });
    let waited = if exit_on_signal {
        tokio::select! {
            waited = waiting => waited,
            sig = interrupted() => {
                guard.kill();
                exit_by(sig)
            }
        }
    } else {
        waiting.await
    };
    match waited {
        Ok((Ok(status), out, err)) => {
            // Reaped: its pid may be reused, so the group is not signalled any more.
            guard.disarm();
            let mut text = String::from_utf8_lossy(&err).trim_end().to_owned();
            let out = String::from_utf8_lossy(&out).trim_end().to_owned();
            if !out.is_empty() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&out);
            }
            Ok(Finished {
                code: status.code(),
                command,
                tail: text,
            })
        }
        Ok((Err(e), _, _)) => {
            guard.kill();
            Err(Error::io(format!("{what}: waiting for `{command}`"), e))
        }
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            Err(Error::Store {
                store: crate::STORE.into(),
                message: format!(
                    "{what}: `{command}` did not finish within {timeout:?} and was killed"
                ),
                temporary: true,
                source: None,
            })
        }
    }
}

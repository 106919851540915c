//! Server processes that are stopped the way their authors intend, so a test or bench leaves
//! nothing running behind it.
//!
//! [`ServerProcess::spawn`] starts a server; [`ServerProcess::stop`] (also run on drop) sends the
//! server's own shutdown signal (nginx: `SIGQUIT`, most others: `SIGTERM`), waits for the process
//! and every process it started to exit, and only when the grace period runs out kills what is
//! left with `SIGKILL`. The server stays in the caller's process group, so a Ctrl-C at the
//! terminal still reaches it; its descendants are found through `/proc` before it is signalled
//! (a child whose parent dies is re-parented and can no longer be found from it).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The signal that asks a server to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// `SIGTERM`: the usual request to exit (SeaweedFS, fake-gcs-server, redis, larder serve).
    Term,
    /// `SIGQUIT`: nginx's graceful shutdown (what `nginx -s quit` sends): the master lets its
    /// workers finish, then they all exit.
    Quit,
    /// `SIGINT`: for servers that treat Ctrl-C as their shutdown request.
    Int,
}

impl StopSignal {
    fn raw(self) -> libc::c_int {
        match self {
            StopSignal::Term => libc::SIGTERM,
            StopSignal::Quit => libc::SIGQUIT,
            StopSignal::Int => libc::SIGINT,
        }
    }
}

/// How a [`ServerProcess::stop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The server and everything it started exited within the grace period.
    Gracefully(Option<ExitStatus>),
    /// The grace period ran out: these processes (the server and/or its descendants) were
    /// killed with `SIGKILL`.
    Killed(Vec<u32>),
    /// Stopped before (a second call, or the drop after an explicit stop).
    Already,
}

/// A server started by a test or bench, stopped gracefully on [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    name: String,
    signal: StopSignal,
    grace: Duration,
    stopped: bool,
}

impl ServerProcess {
    /// Spawn `cmd` as the server `name` (for messages), to be stopped with `signal` and given
    /// `grace` to exit before it is killed.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        signal: StopSignal,
        grace: Duration,
    ) -> io::Result<ServerProcess> {
        let child = cmd.spawn()?;
        Ok(ServerProcess {
            child,
            name: name.to_owned(),
            signal,
            grace,
            stopped: false,
        })
    }

    /// The server's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server has exited (without waiting).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Kill the server and what it started with `SIGKILL` at once, as a crash would (no
    /// shutdown of any kind), and reap it. A later [`stop`](Self::stop) or drop does nothing.
    pub fn kill(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let family = descendants(self.child.id());
        let _ = self.child.kill();
        for &p in &family {
            send_signal(p, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let gone_by = Instant::now() + Duration::from_secs(2);
        while family.iter().any(|p| alive(*p)) && Instant::now() < gone_by {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop the server: its signal, then up to the grace period for it and its descendants to
    /// exit, then `SIGKILL` for whatever is still running. Reaps the server.
    pub fn stop(&mut self) -> Stopped {
        if self.stopped {
            return Stopped::Already;
        }
        self.stopped = true;
        stop_child(&mut self.child, &self.name, self.signal, self.grace)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stop `child` (a server called `name`, for messages) the way [`ServerProcess::stop`] does:
/// `signal`, up to `grace` for it and its descendants to exit, then `SIGKILL` for what is left.
/// Reaps the child. For callers that keep a plain [`Child`].
pub fn stop_child(child: &mut Child, name: &str, signal: StopSignal, grace: Duration) -> Stopped {
    let pid = child.id();
    let deadline = Instant::now() + grace;
    // The family is read before any signal: once the server exits its children are
    // re-parented and no longer lead back to it.
    let mut family = descendants(pid);
    let status = match child.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            send_signal(pid, signal.raw());
            wait_until(child, deadline)
        }
    };
    // Children the server started while it was shutting down count too.
    family.extend(descendants(pid));
    let mut left: Vec<u32> = family.into_iter().filter(|p| alive(*p)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left.retain(|p| alive(*p));
    }
    let mut killed = Vec::new();
    if status.is_none() {
        let _ = child.kill();
        killed.push(pid);
    }
    for &p in &left {
        send_signal(p, libc::SIGKILL);
        killed.push(p);
    }
    // SIGKILL is delivered asynchronously: wait (briefly) until the killed are gone.
    let killed_by = Instant::now() + Duration::from_secs(2);
    while left.iter().any(|p| alive(*p)) && Instant::now() < killed_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = status.or_else(|| child.wait().ok());
    if killed.is_empty() {
        Stopped::Gracefully(status)
    } else {
        eprintln!(
            "{name}: did not stop within {grace:?} of its {signal:?}; killed pids {killed:?}"
        );
        Stopped::Killed(killed)
    }
}

/// Poll `child` until it exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

fn send_signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; a pid that has gone away is ESRCH, ignored.
    unsafe { libc::kill(pid, sig) };
}

/// Whether `pid` is still running (a zombie has exited: it only waits for its parent).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).is_some_and(|s| s.state != 'Z'),
        Err(_) => false,
    }
}

/// The fields of `/proc/PID/stat` this module reads.
struct Stat {
    state: char,
    ppid: u32,
}

/// Parse `/proc/PID/stat`: the command name is in parentheses and may itself hold spaces and
/// parentheses, so the fields are read after the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// Every live process below `pid` (children, their children, ...), from `/proc`.
pub fn descendants(pid: u32) -> BTreeSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                children.entry(stat.ppid).or_default().push(p);
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if found.insert(c) {
                queue.push(c);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that starts a grandchild and waits for it: a SIGTERM stops both.
    #[test]
    fn stop_ends_the_server_and_what_it_started() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & wait"]);
        let mut server =
            ServerProcess::spawn("sh", &mut cmd, StopSignal::Term, Duration::from_secs(1))
                .expect("spawn sh");
        let pid = server.id();
        let started = Instant::now();
        let mut family = descendants(pid);
        while family.is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            family = descendants(pid);
        }
        assert_eq!(family.len(), 1, "sh's sleep child: {family:?}");
        // sh waiting in `wait` exits on SIGTERM; its sleep does not get the signal, so the
        // grace period runs out and the orphaned sleep is killed.
        let stopped = server.stop();
        assert!(
            matches!(stopped, Stopped::Killed(ref pids) if pids.iter().all(|p| family.contains(p))),
            "{stopped:?}"
        );
        assert!(family.iter().all(|p| !alive(*p)), "left behind: {family:?}");
        assert_eq!(server.stop(), Stopped::Already);
    }

    /// A server that handles its signal exits gracefully, children included.
    #[test]
    fn a_server_that_honours_its_signal_stops_gracefully() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap 'kill $child; wait $child; exit 0' QUIT; sleep 60 & child=$!; wait",
        ]);
        let mut server =
            ServerProcess::spawn("sh", &mut cmd, StopSignal::Quit, Duration::from_secs(5))
                .expect("spawn sh");
        let pid = server.id();
        let started = Instant::now();
        while descendants(pid).is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let family = descendants(pid);
        let stopped = server.stop();
        assert!(
            matches!(stopped, Stopped::Gracefully(Some(s)) if s.success()),
            "{stopped:?}"
        );
        assert!(family.iter().all(|p| !alive(*p)), "left behind: {family:?}");
    }

    #[test]
    fn stat_with_parentheses_in_the_name() {
        let s = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").expect("parses");
        assert_eq!((s.state, s.ppid), ('S', 7));
    }
}

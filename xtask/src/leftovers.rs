//! Nothing left behind: after `cargo xtask test` (and `bench`), no process the run started is
//! still running.
//!
//! A run marks every command it starts with [`MARKER`] in the environment (inherited by
//! servers, their workers and daemons that detach with `setsid`). At the end, a process is left
//! behind when it started after the run began, carries the run's marker or belongs to the
//! run's session, and no longer hangs below a living process that was there before the run (its
//! parent chain ends at init: the test or server that should have stopped it has exited). nginx
//! workers whose master was killed, a `weed` whose test crashed, an sccache server nobody
//! stopped: each is printed with its command line, and under CI the run fails.

use std::collections::HashMap;

use anyhow::{Result, bail};

/// Environment variable that marks the processes of one run (`<pid>-<start time>` of xtask).
pub(crate) const MARKER: &str = "LARDER_XTASK_RUN";

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    state: char,
    ppid: u32,
    session: u32,
    /// Clock ticks after boot.
    start: u64,
}

/// Parse `/proc/PID/stat` (the command name, in parentheses, may hold spaces and parentheses:
/// the fields are counted after the last `)`).
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of proc(5) is f[0]: state, ppid, pgrp, session, ..., starttime is field 22.
    Some(Proc {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

fn all_procs() -> HashMap<u32, Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .map(|p| (p.pid, p))
        .collect()
}

/// The command line of `pid`, for the report.
fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if text.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_default()
    } else {
        text.join(" ")
    }
}

/// Whether `pid`'s environment holds `MARKER=value`.
fn has_marker(pid: u32, value: &str) -> bool {
    let wanted = format!("{MARKER}={value}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
}

/// `pid` and the processes above it, up to init: whoever started this xtask (cargo, a shell,
/// `timeout`) may have started in the same clock tick as the run and hang below init once a
/// detached launcher exits; they are never something the run left behind.
fn ancestors(mut pid: u32, procs: &HashMap<u32, Proc>) -> Vec<u32> {
    let mut out = Vec::new();
    while pid > 1 && !out.contains(&pid) {
        out.push(pid);
        match procs.get(&pid) {
            Some(p) => pid = p.ppid,
            None => break,
        }
    }
    out
}

/// One run of xtask: who it is and when it began.
#[derive(Debug)]
pub(crate) struct Run {
    me: Proc,
    marker: String,
}

impl Run {
    /// The run this xtask process is; `None` without `/proc` (then nothing is checked).
    pub(crate) fn begin() -> Option<Run> {
        let me = read_proc(std::process::id())?;
        let marker = format!("{}-{}", me.pid, me.start);
        Some(Run { me, marker })
    }

    /// The value of [`MARKER`] for the commands of this run.
    pub(crate) fn marker(&self) -> &str {
        &self.marker
    }

    /// Processes of this run that are still running: `(pid, command line)`.
    pub(crate) fn leftovers(&self) -> Vec<(u32, String)> {
        let procs = all_procs();
        let ancestors = ancestors(self.me.ppid, &procs);
        let mut found: Vec<(u32, String)> = procs
            .values()
            .filter(|p| p.state != 'Z' && p.pid != self.me.pid && p.start >= self.me.start)
            .filter(|p| !ancestors.contains(&p.pid))
            .filter(|p| p.session == self.me.session || has_marker(p.pid, &self.marker))
            .filter(|p| self.orphaned(p, &procs))
            .map(|p| (p.pid, cmdline(p.pid)))
            .collect();
        found.sort();
        found
    }

    /// Whether `p`'s parent chain reaches init without passing this xtask process or a process
    /// that was running before the run began (which owns it and may still stop it).
    fn orphaned(&self, p: &Proc, procs: &HashMap<u32, Proc>) -> bool {
        let mut cur = p.ppid;
        // A chain cannot be longer than the process table; the bound guards against a cycle
        // read from /proc while processes come and go.
        for _ in 0..=procs.len() {
            if cur <= 1 {
                return true;
            }
            if cur == self.me.pid {
                return false;
            }
            match procs.get(&cur) {
                Some(parent) if parent.start >= self.me.start => cur = parent.ppid,
                _ => return false,
            }
        }
        false
    }

    /// Print what is left behind; under CI that is an error.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        let left = self.leftovers();
        if left.is_empty() {
            eprintln!("xtask: {what} left no process behind");
            return Ok(());
        }
        eprintln!(
            "xtask: {what} left {} process(es) running (a test or bench did not stop what it started):",
            left.len()
        );
        for (pid, cmd) in &left {
            eprintln!("  {pid:>7}  {cmd}");
        }
        if std::env::var("CI").is_ok_and(|v| !(v.is_empty() || v == "0" || v == "false")) {
            bail!("{what} left processes running");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn stat_fields_after_the_name() {
        let stat = "4242 (a (b) c) S 1 4242 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let p = parse_stat(4242, stat).expect("parses");
        assert_eq!(
            (p.state, p.ppid, p.session, p.start),
            ('S', 1, 4240, 987654)
        );
    }

    #[test]
    fn ancestors_end_at_init_and_survive_a_cycle() {
        let proc_ = |pid, ppid| Proc {
            pid,
            state: 'S',
            ppid,
            session: 1,
            start: 0,
        };
        let procs: HashMap<u32, Proc> = [
            proc_(10, 5),
            proc_(5, 3),
            proc_(3, 1),
            proc_(7, 8),
            proc_(8, 7),
        ]
        .into_iter()
        .map(|p| (p.pid, p))
        .collect();
        assert_eq!(ancestors(10, &procs), vec![10, 5, 3]);
        assert_eq!(ancestors(7, &procs), vec![7, 8]);
        assert_eq!(ancestors(42, &procs), vec![42]);
    }

    /// A shell that backgrounds a `sleep` and exits leaves the sleep orphaned: it is found (by
    /// the marker and by the session), and the shell's still-running sibling is not.
    #[test]
    fn an_orphan_of_the_run_is_found() {
        let run = Run::begin().expect("/proc");
        let out = Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
            .env(MARKER, run.marker())
            .output()
            .expect("sh");
        let orphan: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("sleep's pid");
        let mut owned = Command::new("sleep")
            .arg("30")
            .env(MARKER, run.marker())
            .spawn()
            .expect("sleep");
        // The orphan is re-parented once its shell has exited.
        let started = Instant::now();
        let mut left = run.leftovers();
        while !left.iter().any(|(p, _)| *p == orphan) && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
            left = run.leftovers();
        }
        let _ = Command::new("kill").arg(orphan.to_string()).status();
        let _ = owned.kill();
        let _ = owned.wait();
        let found = left.iter().find(|(p, _)| *p == orphan);
        assert!(found.is_some_and(|(_, cmd)| cmd == "sleep 30"), "{left:?}");
        assert!(!left.iter().any(|(p, _)| *p == owned.id()), "{left:?}");
    }
}

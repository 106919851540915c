//! The server under test: a `larder serve` process on a free loopback port over a fresh
//! directory, its memory and descriptors read from `/proc`, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use larder_testservers::{StopSignal, Stopped, stop_child};

use crate::Error;

/// How long the server has to print the line naming its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server has to exit after SIGTERM (its own shutdown deadline is 30 s).
const STOP_GRACE: Duration = Duration::from_secs(40);

/// A running `larder serve`, stopped (SIGTERM, then SIGKILL after the grace period) when
/// dropped without [`Served::stop`].
#[derive(Debug)]
pub(crate) struct Served {
    /// `None` once stopped.
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

impl Served {
    /// Start `larder serve --dir DIR/cache --listen 127.0.0.1:0 EXTRA...` with its working
    /// directory and configuration home in `dir` (so no `larder.toml` of the caller's applies)
    /// and its log in `dir/server.log`, and wait for the line that names its port.
    pub(crate) async fn start(
        larder: &Path,
        dir: &Path,
        extra: &[String],
    ) -> Result<Served, Error> {
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io("creating the log", e))?;
        // Absolute: the server runs in `dir`, where a relative path would not resolve.
        let larder = std::fs::canonicalize(larder)
            .map_err(|e| Error::io(&format!("finding {}", larder.display()), e))?;
        let mut cmd = Command::new(&larder);
        // Settings of the caller's environment would change the server under test (a budget
        // that evicts what the soak expects to read, a store URL); the marker `cargo xtask`
        // puts on the processes it starts stays, so a leftover server would be found.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("LARDER_") && name != "LARDER_XTASK_RUN" {
                cmd.env_remove(&*name);
            }
        }
        cmd.arg("serve")
            .arg("--dir")
            .arg(dir.join("cache"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(&format!("starting {}", larder.display()), e))?;
        let stdout = child.stdout.take();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The first line names the port; the rest is read (and dropped) until the server exits,
        // so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
        });
        let line = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(line)) => line,
            _ => String::new(),
        };
        let url = line.trim().rsplit_once(" on ").map(|(_, u)| u.to_owned());
        let served = Served {
            child: Some(child),
            url: url.unwrap_or_default(),
            log,
        };
        if served.url.starts_with("http://") {
            return Ok(served);
        }
        let log = served.log.clone();
        let _ = served.stop();
        Err(Error::Server(format!(
            "larder serve did not start (first line {line:?}); its log:\n{}",
            tail(&log, 20)
        )))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then wait: `Ok` when it exited by itself with status 0.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match stop_child(&mut child, "larder serve", StopSignal::Term, STOP_GRACE) {
            Stopped::Gracefully(Some(status)) if status.success() => Ok(()),
            Stopped::Gracefully(status) => Err(format!("larder serve exited with {status:?}")),
            Stopped::Killed(pids) => Err(format!(
                "larder serve did not stop within {STOP_GRACE:?} of SIGTERM (killed {pids:?})"
            )),
            Stopped::Already => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// What `/proc` says about the server at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub at_s: f64,
    /// Resident memory (`VmRSS`), bytes.
    pub rss: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Read `/proc/PID/status` and `/proc/PID/fd`; `None` once the process is gone.
pub(crate) fn sample(pid: u32, at_s: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(Sample {
        at_s,
        rss: field("VmRSS:")? * 1024,
        threads: field("Threads:").unwrap_or(0),
        fds,
    })
}

/// The 1-minute load average (`/proc/loadavg`).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The last `n` lines of `path`.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Warnings and errors in the server's log (tracing's level column), and the first few.
pub(crate) fn log_problems(path: &Path) -> (u64, u64, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut warns, mut errors, mut first) = (0, 0, Vec::new());
    for line in text.lines() {
        let level = line.split_whitespace().nth(1).unwrap_or("");
        let bad = match level {
            "WARN" => {
                warns += 1;
                true
            }
            "ERROR" => {
                errors += 1;
                true
            }
            _ => line.contains("panicked"),
        };
        if bad && first.len() < 5 {
            first.push(line.to_owned());
        }
    }
    (warns, errors, first)
}

/// The value of the unlabelled Prometheus gauge `name` in `metrics`, and the sum of every
/// sample of the counter family `family` (all labels).
pub(crate) fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(crate) fn metric_sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gauges_and_sums_counters() {
        let m = "# HELP x\nlarder_connections 65\nlarder_connections_total 3\nlarder_limit_trips_total{limit=\"a\"} 2\nlarder_limit_trips_total{limit=\"b\"} 1\n";
        assert_eq!(metric(m, "larder_connections"), Some(65.0));
        assert_eq!(metric_sum(m, "larder_limit_trips_total"), 3.0);
        assert_eq!(metric_sum(m, "larder_connections"), 65.0);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id(), 0.0).unwrap();
        assert!(s.rss > 0 && s.threads > 0 && s.fds > 0);
    }
}

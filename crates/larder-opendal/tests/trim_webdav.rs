//! Remote trimming (larder-bucket's trim) on OpenDAL's `webdav` service against a WebDAV server
//! that lists collections (WsgiDAV, PyPI package `wsgidav`, with `cheroot`), where large blobs
//! go in parts: the shared trim checks, and blobs in parts counted and collected as a whole.
//! `larder serve`'s own WebDAV tree does not list, so it cannot be trimmed through OpenDAL.
//! `cargo xtask test` installs it (`pip install wsgidav==4.4.0 cheroot==11.1.2`); without it the
//! test skips with a reason locally and fails under CI.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::trim;
use larder_opendal::{BucketBuilder, OpendalStore, OpendalStoreBuilder};
use larder_testservers::{ServerProcess, StopSignal};

/// How long the server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `wsgidav` serving a temporary directory on a free loopback port, stopped on drop (SIGTERM;
/// SIGKILL after 10 s).
struct WsgiDav {
    /// Stopped when the struct is dropped.
    _server: ServerProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl WsgiDav {
    fn start() -> Option<WsgiDav> {
        let Some(bin) = larder_testservers::find_program("wsgidav") else {
            larder_testservers::unavailable(
                "wsgidav",
                "not installed (pip install wsgidav==4.4.0 cheroot==11.1.2; cargo xtask test does)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = larder_testservers::free_ports(1).expect("free port")[0];
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--root")
            .arg(dir.path())
            .args(["--auth", "anonymous", "--server", "cheroot", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ServerProcess::spawn("wsgidav", &mut cmd, StopSignal::Term, STOP_GRACE)
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("wsgidav exited at start: {status}");
            }
            if Instant::now() > deadline {
                child.stop();
                panic!("wsgidav did not listen on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(WsgiDav {
            _server: child,
            port,
            _dir: dir,
        })
    }

    fn store(&self, root: &str, grace: Duration) -> OpendalStore {
        OpendalStoreBuilder::from_url(&format!(
            "opendal+webdav://127.0.0.1:{}/{root}?tls=false&part_size=1MiB",
            self.port
        ))
        .expect("url")
        .with_trim_grace(grace)
        .build()
        .expect("store")
    }
}

/// One server for all checks, each in its own root.
#[tokio::test(flavor = "multi_thread")]
async fn trim_on_webdav_with_blobs_in_parts() {
    let Some(dav) = WsgiDav::start() else {
        return;
    };
    trim::shared(|root, grace| dav.store(root, grace)).await;
    trim::blobs_in_parts_are_counted_and_collected_whole(&dav.store("parts", Duration::ZERO)).await;
}

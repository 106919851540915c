//! The conformance suite (one trial per check, `redis::…`) against OpenDAL's `redis` service
//! and a real `redis-server` (Debian's package), started on a free loopback port with persistence off. Skipped with a reason when
//! `redis-server` is missing, except under CI, where that fails (`cargo xtask test` installs
//! it). Needs the `services-redis` feature (`required-features` in Cargo.toml).

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use larder_bucket::BucketBuilder;
use larder_bucket::testkit::BucketHarness;
use larder_core::Store;
use larder_core::testkit::{Suites, Unavailable};
use larder_opendal::OpendalStore;
use larder_testservers::{ServerProcess, StopSignal};

/// How long the server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port, stopped on drop (SIGTERM; SIGKILL after 10 s).
struct Redis {
    /// Stopped when the struct is dropped.
    _server: ServerProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let Some(bin) = larder_testservers::find_program("redis-server") else {
            larder_testservers::unavailable(
                "redis-server",
                "not installed (apt-get install redis-server, or run `cargo xtask test`)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = larder_testservers::free_ports(1).expect("free port")[0];
        let mut cmd = Command::new(&bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            ServerProcess::spawn("redis-server", &mut cmd, StopSignal::Term, STOP_GRACE)
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited at start: {status}");
            }
            if Instant::now() > deadline {
                child.stop();
                panic!("redis-server did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            _server: child,
            port,
            _dir: dir,
        })
    }
}

/// The store on `redis`, with what the docs promise of it: no listing, so no trim, and the
/// error says why.
async fn redis_store(redis: &Redis) -> larder_opendal::OpendalStore {
    let url = format!("opendal+redis://127.0.0.1:{}/conformance", redis.port);
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(
        !store.backend().inner().streams_blobs(),
        "redis takes a value in one SET"
    );
    let cap = store.capability();
    assert!(!cap.list && cap.delete && !cap.trim, "{cap:?}");
    let mut opts = larder_core::TrimOptions::default();
    opts.max_entries = Some(0);
    let err = store.trim(&opts, None).await.expect_err("no trim");
    assert!(err.to_string().contains("cannot list"), "{err}");
    store
}

/// A store at `addr` (nothing there, or a server that never answers) that gives up quickly.
fn at(addr: std::net::SocketAddr) -> larder_opendal::OpendalStore {
    let url = format!("opendal+redis://{addr}/x?timeout_ms=700");
    larder_opendal::OpendalStoreBuilder::from_url(&url)
        .expect("url")
        .with_retries(1)
        .build()
        .expect("store")
}

fn main() -> std::process::ExitCode {
    Suites::from_args()
        .store("redis", || async {
            let redis =
                Redis::start().ok_or(Unavailable("redis-server is not installed".into()))?;
            let store = redis_store(&redis).await;
            Ok(BucketHarness::new(store).at_endpoint(at).keep(redis))
        })
        .run()
}

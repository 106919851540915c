//! Azurite (Microsoft's Azure Storage emulator, npm package `azurite`) on a free loopback port
//! with in-memory storage and its documented development account, for the azblob tests.
//! Skipped with a reason when `azurite-blob` is missing, except under CI, where that fails
//! (`cargo xtask test` installs it).

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use larder_opendal::{BucketBuilder, OpendalStore, OpendalStoreBuilder};
use larder_testservers::{ServerProcess, StopSignal};

/// Azurite's built-in development account (public, documented with the emulator).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long the server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `azurite-blob` on a free loopback port, stopped on drop (SIGTERM; SIGKILL after 10 s).
pub struct Azurite {
    /// Stopped when the struct is dropped.
    _server: ServerProcess,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> Option<Azurite> {
        let Some(bin) = larder_testservers::find_program("azurite-blob") else {
            larder_testservers::unavailable(
                "azurite-blob",
                "not installed (npm install -g azurite@3.37.0, or run `cargo xtask test`)",
            );
            return None;
        };
        // In-memory storage; the temporary directory is only its working directory (it writes
        // a debug log there when asked to, and nothing else).
        let dir = tempfile::tempdir().expect("temp dir");
        let port = larder_testservers::free_ports(1).expect("free port")[0];
        let mut cmd = Command::new(&bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--silent", "--skipApiVersionCheck"])
            // Without this, Azurite sends a telemetry event on SIGTERM and, with no network to
            // reach, does not exit.
            .arg("--disableTelemetry")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            ServerProcess::spawn("azurite-blob", &mut cmd, StopSignal::Term, STOP_GRACE)
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("azurite-blob exited at start: {status}");
            }
            if Instant::now() > deadline {
                child.stop();
                panic!("azurite-blob did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Azurite {
            _server: child,
            port,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Create `container` (OpenDAL works inside a container; it does not make one), with a
    /// request signed by the account key (Azure's Shared Key scheme).
    pub async fn create_container(&self, container: &str) {
        let date = opendal::raw::Timestamp::now().format_http_date();
        let version = "2021-08-06";
        // Path-style emulator URLs name the account twice in the canonical resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .expect("account key");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
        mac.update(to_sign.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let resp = reqwest::Client::new()
            .put(format!("{}/{container}?restype=container", self.endpoint()))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("content-length", "0")
            .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
            .send()
            .await
            .expect("create container request");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "creating container {container}: {body}");
    }
}

impl Azurite {
    /// A store builder for `CONTAINER/PREFIX` (the container must exist). The account key goes
    /// in the query here, as the emulator's key is public; in a real setup it comes from
    /// `LARDER_OPENDAL_ACCOUNT_KEY`.
    pub fn builder(&self, container_and_prefix: &str) -> OpendalStoreBuilder {
        let url = format!(
            "opendal+azblob://127.0.0.1:{}/{container_and_prefix}?endpoint={}&account_name={ACCOUNT}&account_key={}",
            self.port,
            self.endpoint(),
            KEY.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D"),
        );
        OpendalStoreBuilder::from_url(&url).expect("azblob url")
    }

    /// A store at `CONTAINER/PREFIX`.
    pub fn store(&self, container_and_prefix: &str) -> OpendalStore {
        self.builder(container_and_prefix).build().expect("store")
    }
}

//! The conformance suite against OpenDAL's `azblob` service and Azurite (Microsoft's Azure
//! Storage emulator, npm package `azurite`), started on a free loopback port with in-memory
//! storage and its documented development account. Skipped with a reason when `azurite-blob` is
//! missing, except under CI, where that fails (`cargo xtask test` installs it). Needs the
//! `services-azblob` feature.
#![cfg(feature = "services-azblob")]

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::OpendalHarness;
use hmac::{Hmac, Mac};
use larder_core::Store;
use larder_core::testkit::run_all;
use larder_opendal::OpendalStore;

/// Azurite's built-in development account (public, documented with the emulator).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `azurite-blob` on a free loopback port, killed when dropped.
struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    fn start() -> Option<Azurite> {
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
        let mut child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--silent", "--skipApiVersionCheck"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("azurite-blob exited at start: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("azurite-blob did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Azurite {
            child,
            port,
            _dir: dir,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Create `container` (OpenDAL works inside a container; it does not make one), with a
    /// request signed by the account key (Azure's Shared Key scheme).
    async fn create_container(&self, container: &str) {
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

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_azblob_service_against_azurite() {
    let Some(azurite) = Azurite::start() else {
        return;
    };
    azurite.create_container("larder").await;
    // The account key from the environment's place in a real setup (LARDER_OPENDAL_ACCOUNT_KEY);
    // here in the query, as the emulator's key is public.
    let url = format!(
        "opendal+azblob://127.0.0.1:{}/larder/conformance?endpoint={}&account_name={ACCOUNT}&account_key={}",
        azurite.port,
        azurite.endpoint(),
        KEY.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
    );
    let store = OpendalStore::from_url(&url).expect("store");
    assert!(store.streams_blobs(), "azblob uploads blocks");
    let cap = store.capability();
    assert!(cap.list && cap.delete && !cap.trim, "{cap:?}");
    run_all(&OpendalHarness::new(Arc::new(store))).await;
}

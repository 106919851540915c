//! `larder exec --store minio://...` end to end: two checkouts, two separate `larder`
//! processes, one SeaweedFS bucket between them (started on free loopback ports by
//! `larder-testservers`; skipped without `weed`, except under CI).

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{Sandbox, assert_exit, count_lines, text};
use larder_testservers::SeaweedFs;

/// The same checkout at `dir`: one input, a task that logs each real run to `runs`.
fn checkout(sb: &Sandbox, dir: &Path, runs: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("checkout dir");
    sb.write(dir, "in.txt", "the same input\n");
    let script = format!(
        "echo run >> {}; tr a-z A-Z < in.txt > out.txt; head -c 20000000 /dev/urandom > big.bin",
        runs.display()
    );
    [
        "exec", "--in", "in.txt", "--out", "out.txt", "--out", "big.bin", "--", "sh", "-c", &script,
    ]
    .map(String::from)
    .to_vec()
}

/// The URL of a store under `e2e/NAME` in `s3`'s bucket.
fn bucket_url(s3: &SeaweedFs, name: &str) -> String {
    format!("minio://{}/{}/e2e/{name}", s3.host_port(), s3.bucket())
}

/// `larder --store STORE ARGS...` in `dir`, with `s3`'s keys.
fn exec<S: AsRef<OsStr>>(
    sb: &Sandbox,
    dir: &Path,
    store: &str,
    s3: &SeaweedFs,
    args: &[S],
) -> std::process::Output {
    sb.larder_in(dir)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", store])
        .args(args)
        .env("LARDER_S3_ACCESS_KEY", s3.access_key())
        .env("LARDER_S3_SECRET_KEY", s3.secret_key())
        .output()
        .expect("running larder")
}

#[test]
fn two_checkouts_share_hits_through_a_bucket() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "shared");
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);

    let first = exec(&sb, &a, &url, &s3, &args);
    assert_exit(&first, 0);
    assert_eq!(count_lines(&runs), 1, "first build runs the task");
    let hit = exec(&sb, &b, &url, &s3, &args);
    assert_exit(&hit, 0);
    assert_eq!(
        count_lines(&runs),
        1,
        "second checkout restores from the bucket: {}",
        text(&hit.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(b.join("out.txt")).expect("restored output"),
        "THE SAME INPUT\n"
    );
    assert_eq!(
        std::fs::read(b.join("big.bin")).expect("restored big output"),
        std::fs::read(a.join("big.bin")).expect("original big output"),
        "the 20 MB output (a multipart upload) round-trips"
    );
}

#[test]
fn wrong_keys_or_a_dead_server_are_a_miss_and_a_warning() {
    let sb = Sandbox::new();
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let port = larder_testservers::free_ports(1).expect("a free port")[0];
    let dead = format!("minio://127.0.0.1:{port}/bucket/x");
    let mut cmd = sb.larder_in(&a);
    let out = cmd
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", &dead])
        .args(&args)
        .env("LARDER_S3_ACCESS_KEY", "k")
        .env("LARDER_S3_SECRET_KEY", "s")
        .output()
        .expect("running larder exec");
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    // No keys at all: a clear message naming the variables.
    let out = sb
        .larder_in(&a)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", &dead])
        .args(&args)
        .output()
        .expect("running larder exec");
    let err = text(&out.stderr);
    assert!(err.contains("LARDER_S3_ACCESS_KEY"), "{err}");
}

#[test]
fn stats_and_trim_work_on_a_bucket() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "trim");
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    assert_exit(&exec(&sb, &a, &url, &s3, &args), 0);
    let stats = exec(&sb, &a, &url, &s3, &["stats", "--json"]);
    assert_exit(&stats, 0);
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(json["entries"], 1, "{json}");

    let trim = exec(&sb, &a, &url, &s3, &["trim", "--max-entries", "0"]);
    assert_exit(&trim, 0);
    assert!(
        text(&trim.stdout).contains("evicted 1 entry"),
        "{}",
        text(&trim.stdout)
    );
    // The bucket no longer has it: the task runs again.
    assert_exit(&exec(&sb, &a, &url, &s3, &args), 0);
    assert_eq!(count_lines(&runs), 2);
}

/// `?max-entries=N` on a remote tier's URL is that tier's own budget: a plain `larder trim`
/// trims the bucket to it and leaves the local tier (no budget of its own) alone.
#[test]
fn each_tier_is_trimmed_to_its_own_budget() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "tier-budget");
    let local = sb.root.join("local-cache");
    let dir = sb.root.join("work");
    std::fs::create_dir_all(&dir).expect("work dir");
    let larder = |args: &[&str]| {
        sb.larder_in(&dir)
            .args(["--store", &local.display().to_string()])
            .args(["--store", &format!("{url}?max-entries=1")])
            .args(args)
            .env("LARDER_S3_ACCESS_KEY", s3.access_key())
            .env("LARDER_S3_SECRET_KEY", s3.secret_key())
            .output()
            .expect("running larder")
    };
    for i in 0..3 {
        sb.write(&dir, "in.txt", format!("input {i}\n"));
        let out = larder(&[
            "exec", "--in", "in.txt", "--out", "out.txt", "--", "cp", "in.txt", "out.txt",
        ]);
        assert_exit(&out, 0);
    }
    let trim = larder(&["trim"]);
    assert_exit(&trim, 0);
    let stdout = text(&trim.stdout);
    assert!(
        stdout.contains("evicted 2 entries") && stdout.contains("1 entry"),
        "{stdout}{}",
        text(&trim.stderr)
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the bucket has a budget: {stdout}"
    );
    let bucket = exec(&sb, &dir, &url, &s3, &["stats", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&bucket.stdout).expect("stats JSON");
    assert_eq!(json["entries"], 1, "{json}");
    let local_stats = sb
        .larder_in(&dir)
        .args(["--store", &local.display().to_string(), "stats", "--json"])
        .output()
        .expect("running larder stats");
    let json: serde_json::Value = serde_json::from_slice(&local_stats.stdout).expect("stats JSON");
    assert_eq!(json["entries"], 3, "the local tier is untouched: {json}");

    // A budget that is not one is refused before anything is opened.
    let bad = sb
        .larder_in(&dir)
        .args(["--store", &format!("{url}?max-size=lots"), "stats"])
        .output()
        .expect("running larder");
    assert_exit(&bad, 2);
    assert!(
        text(&bad.stderr).contains("not a size"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn trim_keeps_the_entry_another_process_just_used() {
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "lru");
    let runs = sb.root.join("runs.log");
    let dir = sb.root.join("w");
    std::fs::create_dir_all(&dir).expect("dir");
    let task = |input: &str| -> Vec<String> {
        sb.write(&dir, input, format!("contents of {input}\n"));
        let script = format!(
            "echo {input} >> {}; tr a-z A-Z < {input} > {input}.out",
            runs.display()
        );
        [
            "exec",
            "--in",
            input,
            "--out",
            &format!("{input}.out"),
            "--",
            "sh",
            "-c",
            &script,
        ]
        .map(String::from)
        .to_vec()
    };
    let (a, b) = (task("a.txt"), task("b.txt"));
    assert_exit(&exec(&sb, &dir, &url, &s3, &a), 0);
    assert_exit(&exec(&sb, &dir, &url, &s3, &b), 0);
    // A is used again (a hit, recorded when that process exits); B is not.
    assert_exit(&exec(&sb, &dir, &url, &s3, &a), 0);
    assert_eq!(count_lines(&runs), 2, "the third run was a hit");

    let trim = exec(&sb, &dir, &url, &s3, &["trim", "--max-entries", "1"]);
    assert_exit(&trim, 0);
    assert!(
        text(&trim.stdout).contains("evicted 1 entry"),
        "{}",
        text(&trim.stdout)
    );
    // A was kept (a hit, with its outputs: its blobs survived), B was evicted (runs again).
    assert_exit(&exec(&sb, &dir, &url, &s3, &a), 0);
    assert_eq!(count_lines(&runs), 2, "A is still in the bucket");
    assert_exit(&exec(&sb, &dir, &url, &s3, &b), 0);
    assert_eq!(count_lines(&runs), 3, "B was the one evicted");
}

/// A policy built by `cargo xtask policies` (`target/policies/NAME.wasm`); `None` (skip) when
/// missing, except under CI.
fn policy(name: &str) -> Option<std::path::PathBuf> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| root.join(t))
        .unwrap_or_else(|| root.join("target"));
    let p = target.join("policies").join(format!("{name}.wasm"));
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: `cargo xtask test` builds the policies first",
        p.display()
    );
    eprintln!("skipping: {} not built (cargo xtask policies)", p.display());
    None
}

#[test]
fn bucket_trims_use_the_configured_eviction_policy() {
    let Some(lfu) = policy("lfu") else { return };
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let larder = |sb: &Sandbox, url: &str, args: &[&str]| {
        sb.larder()
            .args(args)
            .env("LARDER_STORE", url)
            .env("LARDER_NO_LOCAL", "1")
            .env("LARDER_S3_ACCESS_KEY", s3.access_key())
            .env("LARDER_S3_SECRET_KEY", s3.secret_key())
            .output()
            .expect("running larder")
    };
    // `often` stored first and read three times (three processes, three access records), then
    // `b` and `c` stored, a second apart (object times may be whole seconds).
    let fill = |sb: &Sandbox, url: &str| {
        sb.write(&sb.work, "f.txt", "data\n");
        assert_exit(&larder(sb, url, &["put", "often", "f.txt"]), 0);
        for _ in 0..3 {
            assert_exit(&larder(sb, url, &["get", "often"]), 0);
        }
        for (key, file) in [("b", "g.txt"), ("c", "h.txt")] {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            sb.write(&sb.work, file, format!("{key} data\n"));
            assert_exit(&larder(sb, url, &["put", key, file]), 0);
        }
    };

    // LRU (no policy configured): `often` was used least recently, so it goes.
    let lru = Sandbox::new();
    let url = bucket_url(&s3, "policy-lru");
    fill(&lru, &url);
    assert_exit(&larder(&lru, &url, &["trim", "--max-entries", "2"]), 0);
    assert_exit(&larder(&lru, &url, &["get", "often"]), 1);

    // The LFU policy from larder.toml: `b` (no hits, older than `c`) goes instead.
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "policy-lfu");
    fill(&sb, &url);
    sb.write(
        &sb.work,
        "larder.toml",
        format!("[policy]\neviction = \"{}\"\n", lfu.display()),
    );
    let trim = larder(&sb, &url, &["trim", "--max-entries", "2"]);
    assert_exit(&trim, 0);
    assert!(
        text(&trim.stdout).contains("evicted 1 entry"),
        "{}",
        text(&trim.stdout)
    );
    assert_exit(&larder(&sb, &url, &["get", "often"]), 0);
    assert_exit(&larder(&sb, &url, &["get", "b"]), 1);
    assert_exit(&larder(&sb, &url, &["get", "c"]), 0);
}

/// Two `larder serve` processes, each with its own directory in front of the same bucket
/// (`--dir DIR --store minio://…`): what a client stored through one is served by the other,
/// from the bucket, once the first has uploaded it from its queue.
#[test]
fn two_servers_on_one_bucket_serve_each_others_entries() {
    use common::served::Served;
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "two-servers");
    let server = |name: &str| {
        let mut cmd = sb.larder();
        cmd.env("LARDER_S3_ACCESS_KEY", s3.access_key())
            .env("LARDER_S3_SECRET_KEY", s3.secret_key())
            .args(["--store", &url]);
        Served::spawn(cmd, &sb.root.join(name), &[])
    };
    let (one, two) = (server("server-one"), server("server-two"));
    let runs = sb.root.join("runs.log");

    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let out = sb
        .larder_in(&a)
        .args(["--no-local", "--store", &one.url])
        .args(&args)
        .output()
        .expect("exec through server one");
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1);

    // Server one uploads from its queue in the background: wait until the bucket holds the
    // entry, then server two (which never saw it) must serve it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = exec(&sb, &sb.root, &url, &s3, &["stats", "--json"]);
        assert_exit(&stats, 0);
        let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON");
        if v["entries"].as_u64() == Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server one never uploaded the entry: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let b = sb.root.join("b");
    let args = checkout(&sb, &b, &runs);
    let out = sb
        .larder_in(&b)
        .args(["--no-local", "--store", &two.url])
        .args(&args)
        .output()
        .expect("exec through server two");
    assert_exit(&out, 0);
    assert_eq!(
        count_lines(&runs),
        1,
        "a hit through server two: {}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(b.join("out.txt")).expect("restored"),
        "THE SAME INPUT\n"
    );
    drop((one, two));
}

/// A server whose store URL carries a budget (`?max-entries=1`) trims the bucket to it on its
/// `--upstream-trim-interval`, and says so in `/metrics`.
#[test]
fn a_server_trims_its_bucket_to_the_bucket_budget() {
    use common::served::Served;
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = bucket_url(&s3, "server-budget");
    let mut cmd = sb.larder();
    cmd.env("LARDER_S3_ACCESS_KEY", s3.access_key())
        .env("LARDER_S3_SECRET_KEY", s3.secret_key())
        .args(["--store", &format!("{url}?max-entries=1")]);
    let server = Served::spawn(
        cmd,
        &sb.root.join("server"),
        &["--upstream-trim-interval", "0.5"],
    );
    let dir = sb.root.join("work");
    std::fs::create_dir_all(&dir).expect("work dir");
    for i in 0..3 {
        sb.write(&dir, "in.txt", format!("input {i}\n"));
        let out = sb
            .larder_in(&dir)
            .args(["--no-local", "--store", &server.url])
            .args([
                "exec", "--in", "in.txt", "--out", "out.txt", "--", "cp", "in.txt", "out.txt",
            ])
            .output()
            .expect("exec through the server");
        assert_exit(&out, 0);
    }
    // The uploads reach the bucket in the background and the trims keep it at one entry:
    // wait until three entries were uploaded and the bucket holds one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    loop {
        let metrics = http_get(&format!("{}/metrics", server.url));
        let uploaded = metric(&metrics, "larder_upstream_uploaded_total ");
        let evicted = metric(&metrics, "larder_upstream_evicted_entries_total ");
        let stats = exec(&sb, &sb.root, &url, &s3, &["stats", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON");
        if uploaded == 3 && v["entries"].as_u64() == Some(1) && evicted == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bucket was not trimmed to one entry: uploaded {uploaded}, evicted {evicted}, {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // The server's own directory keeps everything: it has no budget.
    let local = sb
        .larder()
        .args(["--store", &sb.root.join("server").display().to_string()])
        .args(["stats", "--json"])
        .output()
        .expect("stats of the server's directory");
    let v: serde_json::Value = serde_json::from_slice(&local.stdout).expect("JSON");
    assert_eq!(v["entries"], 3, "{v}");
    drop(server);
}

/// The body of a plain HTTP/1.0 GET of `url` (`http://HOST:PORT/PATH`); empty on any failure.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return String::new();
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut conn) = std::net::TcpStream::connect(host) else {
        return String::new();
    };
    let _ = write!(conn, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

//! `larder exec --store opendal+...` end to end: two checkouts share hits through OpenDAL's
//! `webdav` service against a real `larder serve` (its `/dav` tree) and through the `fs`
//! service (which `larder trim` then trims); a dead server is a miss and a warning; a service
//! not compiled in names its feature.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};

use common::{Sandbox, assert_exit, count_lines, text};

/// `larder serve` on a free loopback port over `dir`, stopped (SIGTERM) when dropped.
struct Serve {
    child: Child,
    /// `HOST:PORT`
    addr: String,
}

impl Serve {
    fn start(sb: &Sandbox, dir: &Path) -> Serve {
        let mut child = sb
            .larder()
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting larder serve");
        let mut first = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut first)
                .expect("reading larder serve's first line");
        }
        // "... on http://127.0.0.1:PORT"
        let Some(addr) = first
            .trim()
            .rsplit_once(" on http://")
            .map(|(_, a)| a.to_owned())
        else {
            let _ = child.kill();
            panic!("unexpected first line from larder serve: {first:?}");
        };
        Serve { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        larder_testservers::stop_child(
            &mut self.child,
            "larder serve",
            larder_testservers::StopSignal::Term,
            std::time::Duration::from_secs(10),
        );
    }
}

/// The same checkout at `dir`: a task that logs each real run to `runs` and writes a small
/// output and a 3 MB one (over the 1 MiB part size below, so WebDAV stores it in parts).
fn checkout(sb: &Sandbox, dir: &Path, runs: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("checkout dir");
    sb.write(dir, "in.txt", "the same input\n");
    let script = format!(
        "echo run >> {}; tr a-z A-Z < in.txt > out.txt; head -c 3000000 /dev/urandom > blob.bin",
        runs.display()
    );
    [
        "exec", "--in", "in.txt", "--out", "out.txt", "--out", "blob.bin", "--", "sh", "-c",
        &script,
    ]
    .map(String::from)
    .to_vec()
}

fn exec(sb: &Sandbox, dir: &Path, store: &str, args: &[String]) -> Output {
    sb.larder_in(dir)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", store])
        .args(args)
        .output()
        .expect("running larder exec")
}

/// Run the checkout in `a`, then in `b`: the second must be a hit restoring the same bytes.
fn assert_shared_hit(sb: &Sandbox, store: &str) {
    let runs = sb.root.join("runs.log");
    let (a, b) = (sb.root.join("a"), sb.root.join("b"));
    let args = checkout(sb, &a, &runs);
    checkout(sb, &b, &runs);
    let first = exec(sb, &a, store, &args);
    assert_exit(&first, 0);
    assert_eq!(count_lines(&runs), 1);
    assert!(
        !text(&first.stderr).contains("warning"),
        "{}",
        text(&first.stderr)
    );
    let hit = exec(sb, &b, store, &args);
    assert_exit(&hit, 0);
    assert_eq!(count_lines(&runs), 1, "not a hit: {}", text(&hit.stderr));
    for f in ["out.txt", "blob.bin"] {
        assert_eq!(
            std::fs::read(b.join(f)).expect("restored"),
            std::fs::read(a.join(f)).expect("original"),
            "{f}"
        );
    }
}

#[test]
fn two_checkouts_share_hits_through_webdav_on_larder_serve() {
    let sb = Sandbox::new();
    let served = Serve::start(&sb, &sb.root.join("server-cache"));
    let store = format!(
        "opendal+webdav://{}/dav/team?tls=false&list=false&part_size=1MiB",
        served.addr
    );
    assert_shared_hit(&sb, &store);
}

#[test]
fn two_checkouts_share_hits_through_the_fs_service() {
    let sb = Sandbox::new();
    let store = format!("opendal+fs://{}", sb.root.join("shared").display());
    assert_shared_hit(&sb, &store);
    assert!(sb.root.join("shared/entries").is_dir());

    // The store trims (larder-bucket's trim): the entry goes, so the task runs again.
    let a = sb.root.join("a");
    let trim = exec(
        &sb,
        &a,
        &store,
        &["trim", "--max-entries", "0"].map(String::from),
    );
    assert_exit(&trim, 0);
    assert!(
        text(&trim.stdout).contains("evicted 1 entry"),
        "{}",
        text(&trim.stdout)
    );
    let runs = sb.root.join("runs.log");
    assert_exit(&exec(&sb, &a, &store, &checkout(&sb, &a, &runs)), 0);
    assert_eq!(count_lines(&runs), 2, "the trimmed entry is a miss");
}

#[test]
fn a_dead_webdav_server_is_a_miss_and_a_warning_not_a_failed_build() {
    let sb = Sandbox::new();
    let port = larder_testservers::free_ports(1).expect("free port")[0];
    let store = format!("opendal+webdav://127.0.0.1:{port}/dav/x?tls=false&retries=1");
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let out = exec(&sb, &a, &store, &args);
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    let err = text(&out.stderr);
    assert!(err.contains("warning"), "{err}");
}

#[test]
fn a_service_not_compiled_in_names_its_feature() {
    let sb = Sandbox::new();
    let out = sb
        .larder()
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", "opendal+sftp://host/dir", "stats"])
        .output()
        .expect("running larder stats");
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("services-sftp"), "{err}");
}

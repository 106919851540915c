//! `larder exec --store gs://...` end to end: two checkouts, two separate `larder` processes,
//! one fake-gcs-server bucket between them (started on a free loopback port by
//! `larder-testservers`; skipped without fake-gcs-server, except under CI), then `stats` and
//! `trim` on that bucket.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{Sandbox, assert_exit, count_lines, text};
use larder_testservers::FakeGcs;

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

/// `larder --store gs://BUCKET/e2e/NAME ARGS...` in `dir`, anonymous, on `endpoint`.
fn exec<S: AsRef<OsStr>>(
    sb: &Sandbox,
    dir: &Path,
    store: &str,
    endpoint: &str,
    args: &[S],
) -> std::process::Output {
    sb.larder_in(dir)
        .env("LARDER_NO_LOCAL", "1")
        .args(["--store", store])
        .args(args)
        .env("LARDER_GCS_ENDPOINT", endpoint)
        .env("LARDER_GCS_ANONYMOUS", "1")
        .output()
        .expect("running larder")
}

#[test]
fn two_checkouts_share_hits_through_a_bucket_and_stats_and_trim_work() {
    let Some(gcs) = FakeGcs::start() else {
        return;
    };
    let sb = Sandbox::new();
    let url = format!("gs://{}/e2e/shared", gcs.bucket());
    let ep = gcs.endpoint();
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let b = sb.root.join("b");
    let args = checkout(&sb, &a, &runs);
    checkout(&sb, &b, &runs);

    assert_exit(&exec(&sb, &a, &url, &ep, &args), 0);
    assert_eq!(count_lines(&runs), 1, "first build runs the task");
    let hit = exec(&sb, &b, &url, &ep, &args);
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
        "the 20 MB output (a streamed upload) round-trips"
    );

    let stats = exec(&sb, &a, &url, &ep, &["stats", "--json"]);
    assert_exit(&stats, 0);
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(json["entries"], 1, "{json}");
    assert!(json["bytes"].as_u64().unwrap_or(0) > 20_000_000, "{json}");

    let trim = exec(&sb, &a, &url, &ep, &["trim", "--max-entries", "0"]);
    assert_exit(&trim, 0);
    assert!(
        text(&trim.stdout).contains("evicted 1 entry"),
        "{}",
        text(&trim.stdout)
    );
    // The bucket no longer has it: the task runs again.
    assert_exit(&exec(&sb, &b, &url, &ep, &args), 0);
    assert_eq!(count_lines(&runs), 2);
}

#[test]
fn a_dead_endpoint_is_a_miss_and_a_warning() {
    let sb = Sandbox::new();
    let runs = sb.root.join("runs.log");
    let a = sb.root.join("a");
    let args = checkout(&sb, &a, &runs);
    let port = larder_testservers::free_ports(1).expect("a free port")[0];
    let out = exec(
        &sb,
        &a,
        "gs://bucket/x",
        &format!("http://127.0.0.1:{port}"),
        &args,
    );
    assert_exit(&out, 0);
    assert_eq!(count_lines(&runs), 1, "the task ran");
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}
